"""OAuth2 token provider against the fake authorization server
(fakes/oauth_server.py, HTTPS with the suite's private CA): one refresh for
many syncs, token health in the API, metrics, /healthz and `mailgate oauth
status`, a rotated refresh token stored across a restart (the old one is
refused by the fake afterwards), invalid_grant -> auth_failed with the
provider's text, and no token or secret in logs (debug level), API answers
or the database file.

The upstream is IMAP on a port where nothing listens: until XOAUTH2 login
is in, each sync gets its access token first (that is what is observed
here) and then fails to connect."""

from __future__ import annotations

import datetime
import http.client
import os
import socket
import ssl
import stat
import subprocess
import time
import urllib.parse

import pytest

from dovecot import mailbox, run_command, wait_until
from fakes.oauth_server import OAuthFake
from harness import SALES, SUPPORT
from imapbase import _certificates

CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
CLIENT_SECRET = "cs~Q8Z8Q~client-secret-value-ABCDEFG"
SEED = "rt-seed-0.AVYA-initial-refresh-token-from-the-admin"


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_file(path, text):
    path.write_text(text)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return str(path)


@pytest.fixture
def fake(tmp_path):
    f = OAuthFake(tmp_path / "oauth-fake", _certificates(), flavor="microsoft",
                  client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_tokens=[SEED])
    yield f
    f.stop()


def oauth2_section(fake, tmp_path, **over):
    tmp_path.mkdir(parents=True, exist_ok=True)
    section = {
        "provider": "microsoft",
        "client_id": CLIENT_ID,
        "tenant": "contoso",
        "token_url": fake.token_url(),
        "authorize_url": fake.authorize_url(),
        "client_secret_file": private_file(tmp_path / "client-secret", CLIENT_SECRET),
        "refresh_token_file": private_file(tmp_path / "refresh-token", SEED),
        "ca_file": str(fake.ca),
    }
    section.update(over)
    return section


def start(make_gateway, fake, tmp_path, *, auth_failure_limit=3, sales=None, oauth=None,
          run=True, **oauth2_over):
    support = dict(SUPPORT)
    support["upstream"] = {
        "protocol": "imap", "auth": "oauth2", "host": "127.0.0.1", "port": dead_port(),
        "user": "support@contoso.test", "poll_interval": "1h", "idle": False,
        "auth_failure_limit": auth_failure_limit,
    }
    support["oauth2"] = {k: v for k, v in oauth2_section(fake, tmp_path, **oauth2_over).items()
                          if v is not None}
    cfg = {"mailbox": [support, sales or dict(SALES)]}
    if oauth:
        cfg["oauth"] = oauth
    g = make_gateway(cfg, env={"MAILGATE_LOG": "debug"}, start=run)
    return g


def wait_first_sync(g):
    return wait_until(lambda: mailbox(g)["last_error_at"] and mailbox(g), 30,
                      "the first sync of support", g=g)


def wait_past(iso: str):
    """Waits until the clock is past an RFC 3339 time (an access token's
    expiry): a precondition, not a measurement."""
    at = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    while time.time() <= at + 0.5:
        time.sleep(0.1)


def secrets_of(fake) -> list[str]:
    s = fake.state()
    return [CLIENT_SECRET, SEED, *s["issued_access_tokens"], *s["issued_refresh_tokens"]]


def assert_nowhere(g, secrets, *texts):
    db = (g.workdir / "data" / "mailgate.redb").read_bytes()
    logs = "".join(g.log_text(i) for i in range(1, g.starts + 1))
    for secret in secrets:
        assert secret.encode() not in db, "a token is in the database file in clear"
        assert secret not in logs, "a token is in the log"
        for t in texts:
            assert secret not in t, "a token is in an API answer or command output"


def test_one_refresh_serves_many_syncs_and_health_is_shown(make_gateway, fake, tmp_path):
    soon = (datetime.date.today() + datetime.timedelta(days=3)).isoformat()
    sales = dict(SALES)
    sales["oauth2"] = oauth2_section(fake, tmp_path / "sales", client_secret_expires=soon)
    g = start(make_gateway, fake, tmp_path, sales=sales)
    first = wait_first_sync(g)
    assert first["last_error_kind"] == "connect", first
    for _ in range(3):
        r = g.http_json("POST", "/api/v1/mailboxes/support/sync", {})
        assert r.status == 502 and r.json()["kind"] == "connect", r
    state = fake.state()
    assert state["refreshes"] == 1, state["requests"]
    assert state["requests"][0]["scope"] == \
        "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"

    mb = mailbox(g)
    o = mb["oauth"]
    assert o["provider"] == "microsoft" and o["client_id"] == CLIENT_ID, o
    assert o["last_refresh_ok_at"] and o["access_token_expires_at"], o
    assert o["refresh_token_origin"] == "rotated", o
    assert o["refreshes"] == 1 and o["last_refresh_error"] is None, o
    assert o["degraded"] is False, o

    m = g.metrics()
    assert m.get("mailgate_oauth_refresh_total", mailbox="support", outcome="ok") == 1
    assert m.get("mailgate_oauth_refresh_total", mailbox="support", outcome="revoked") == 0
    expiry = m.get("mailgate_oauth_token_expiry_timestamp_seconds", mailbox="support")
    assert expiry > datetime.datetime.now().timestamp() + 3000, expiry
    assert m.find("mailgate_oauth_refresh_token_age_seconds"), m.text

    # The client secret of `sales` expires in 3 days: degraded, named.
    health = g.http("GET", "/healthz")
    assert health.status == 200
    h = health.json()
    assert h["status"] == "degraded", h
    assert [d["mailbox"] for d in h["degraded"]] == ["sales"], h
    assert f"expires on {soon}" in h["degraded"][0]["reasons"][0], h

    r = run_command(g, "oauth", "status")
    assert "in use by a running mailgate" in r.stdout, r.stdout + r.stderr
    assert "support: microsoft" in r.stdout and "(rotated)" in r.stdout, r.stdout
    assert "DEGRADED: the client secret expires" in r.stdout, r.stdout
    assert r.returncode == 1, r.stdout  # sales has a problem

    key = g.workdir / "data" / "oauth-token.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    api = g.http("GET", "/api/v1/mailboxes", token=g.token).body.decode()

    # Another process with the stored (sealed) access token: no new refresh.
    g.stop()
    t = run_command(g, "test-connection", "support")
    assert "OAuth2: access token obtained" in t.stdout, t.stdout + t.stderr
    assert t.returncode == 1 and "FAILED (connect)" in t.stdout, t.stdout
    assert fake.state()["refreshes"] == 1
    assert_nowhere(g, secrets_of(fake), api, m.text, r.stdout + r.stderr, t.stdout + t.stderr)


def test_a_rotated_refresh_token_survives_a_restart_and_the_old_one_is_dead(
        make_gateway, fake, tmp_path):
    # Access tokens that expire at once: every start needs a refresh.
    fake.control(lifetime=1)
    g = start(make_gateway, fake, tmp_path)
    wait_first_sync(g)
    state = fake.state()
    assert state["refreshes"] == 1
    rotated = state["issued_refresh_tokens"][0]
    assert state["valid_refresh_tokens"] == [rotated]
    expires = mailbox(g)["oauth"]["access_token_expires_at"]
    g.stop()
    wait_past(expires)

    # Stopped: the command reads the store itself.
    r = run_command(g, "oauth", "status")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "in use" not in r.stdout and "(rotated)" in r.stdout, r.stdout

    g.start()
    wait_until(lambda: fake.state()["refreshes"] == 2, 30, "a refresh after the restart", g=g)
    state = fake.state()
    assert all(req["grant_type"] == "refresh_token" for req in state["requests"])
    assert len(state["requests"]) == 2, "the seed was tried after the restart"
    o = wait_until(lambda: mailbox(g)["oauth"]["refreshes"] == 2 and mailbox(g)["oauth"], 30,
                   "the second refresh in the API", g=g)
    assert o["last_refresh_error"] is None, o
    # The seed the config still names was spent by the first rotation.
    status, answer = fake.refresh(SEED, CLIENT_ID, CLIENT_SECRET)
    assert status == 400 and answer["error"] == "invalid_grant", answer
    assert_nowhere(g, secrets_of(fake), r.stdout)


def test_invalid_grant_pauses_the_mailbox_with_the_providers_text(make_gateway, fake, tmp_path):
    fake.control(revoke="all")
    g = start(make_gateway, fake, tmp_path, auth_failure_limit=1,
              oauth={"degraded_after": "1s"})
    mb = wait_until(lambda: mailbox(g)["status"] == "auth_failed" and mailbox(g), 30,
                    "auth_failed", g=g)
    assert mb["last_error_kind"] == "auth", mb
    assert "invalid_grant" in mb["last_error"] and "AADSTS70008" in mb["last_error"], mb
    o = mb["oauth"]
    assert o["last_refresh_error_kind"] == "revoked", o
    assert o["last_refresh_error"].startswith(
        "the authorization server refused the grant: invalid_grant (AADSTS70008:"), o
    assert o["failing_since"], o
    assert g.metrics().get("mailgate_oauth_refresh_total", mailbox="support",
                           outcome="revoked") == 1
    h = wait_until(lambda: g.http("GET", "/healthz").json()["status"] == "degraded"
                   and g.http("GET", "/healthz").json(), 30, "/healthz degraded", g=g)
    assert h["degraded"][0]["mailbox"] == "support", h
    assert "AADSTS70008" in h["degraded"][0]["reasons"][0], h
    r = run_command(g, "oauth", "status")
    assert r.returncode == 1 and "AADSTS70008" in r.stdout, r.stdout + r.stderr
    # Paused: no further refresh attempts.
    assert len(fake.state()["requests"]) == 1
    assert_nowhere(g, [CLIENT_SECRET, SEED], r.stdout, str(mb))


def test_secrets_in_the_oauth2_section_are_refused_by_check_config(make_gateway, fake, tmp_path):
    g = start(make_gateway, fake, tmp_path)
    g.stop()
    text = g.config_path.read_text().replace(
        'client_id = "', f'client_secret = "{CLIENT_SECRET}"\nclient_id = "', 1)
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    r = run_command(g, "check-config", config=str(bad))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "mailbox[0].oauth2.client_secret: secrets are never written in the config" in r.stderr
    assert CLIENT_SECRET not in r.stdout + r.stderr


def authorize_process(g):
    proc = subprocess.Popen(
        [g.binary, "oauth", "authorize", "support", "--wait", "60s", "--config",
         str(g.config_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        cwd=g.workdir, env={**os.environ, "NO_COLOR": "1", "MAILGATE_LOG": "debug"})
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("https://"):
            return proc, line.strip(), lines
    proc.wait(10)
    raise AssertionError(f"no URL printed: {lines} {proc.stderr.read()}")


def get(url, ca=None):
    u = urllib.parse.urlsplit(url)
    if u.scheme == "https":
        conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=30,
                                           context=ssl.create_default_context(cafile=str(ca)))
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("GET", u.path + ("?" + u.query if u.query else ""))
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def test_authorize_with_pkce_stores_a_refresh_token_the_gateway_then_uses(
        make_gateway, fake, tmp_path):
    fake.control(lifetime=1)
    g = start(make_gateway, fake, tmp_path, run=False, refresh_token_file=None)
    proc, url, _ = authorize_process(g)
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert q["code_challenge_method"] == ["S256"] and q["client_id"] == [CLIENT_ID], q
    assert q["scope"] == ["https://outlook.office.com/IMAP.AccessAsUser.All offline_access"], q
    redirect = q["redirect_uri"][0]
    assert redirect.startswith("http://127.0.0.1:"), redirect

    # The fake plays the consenting user: it redirects to our loopback port.
    status, headers, _ = get(url, fake.ca)
    assert status == 302, status
    status, _, page = get(headers["Location"])
    assert status == 200 and b"close this window" in page
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert "stored the refresh token of mailbox support" in out, out
    state = fake.state()
    assert state["codes"] == 1 and state["requests"][-1]["grant_type"] == "authorization_code"

    r = run_command(g, "oauth", "status")
    assert "(authorized)" in r.stdout, r.stdout + r.stderr
    expires = [line.split(": ", 1)[1] for line in r.stdout.splitlines()
               if "access token expires:" in line][0]
    wait_past(expires.strip())

    # The gateway refreshes with the stored token (its access token expired).
    g.start()
    wait_until(lambda: fake.state()["refreshes"] == 1, 30, "a refresh with the stored token", g=g)
    o = wait_until(lambda: mailbox(g)["oauth"]["last_refresh_ok_at"] and mailbox(g)["oauth"], 30,
                   "the refresh in the API", g=g)
    assert o["last_refresh_error"] is None and o["refresh_token_origin"] == "rotated", o
    assert_nowhere(g, secrets_of(fake), out + err, r.stdout)


def test_authorize_refuses_a_redirect_with_a_foreign_state(make_gateway, fake, tmp_path):
    g = start(make_gateway, fake, tmp_path, run=False, refresh_token_file=None)
    proc, url, _ = authorize_process(g)
    redirect = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["redirect_uri"][0]
    status, _, _ = get(redirect + "?code=stolen-code&state=not-the-one")
    assert status == 200
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert "state that is not ours" in err, err
    assert fake.state()["requests"] == [], "a code with a foreign state was exchanged"
