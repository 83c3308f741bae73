"""Agent replies sent through an HTTP API instead of SMTP, end to end
through `mailgate serve`: `[relay] transport = "graph"` (sendMail with the
MIME, fakes/graph.py) and `transport = "gmail"` (messages.send with the raw
message, fakes/gmail.py), the token from `relay.oauth2_mailbox`'s
[mailbox.oauth2] (fakes/oauth_server.py). The reply goes out with its MIME
intact and the outbox entry `sent`; a refused token is refreshed once and
the reply still goes; a 503 or 429 from the API defers it and
it goes on a later attempt. No token or secret is in the log."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import stat
import subprocess
import time

import pytest

from fakes.gmail import GmailFake
from fakes.graph import FakeGraph
from fakes.oauth_server import OAuthFake
from harness import SALES, SUPPORT
from imapbase import _certificates
from mailmsg import make_msg, new_msgid, unique

ALICE = "alice@client.test"
SENDER = "support@example.test"
CLIENT_ID = "7e1f0a9b-relay-api-e2e-client"
CLIENT_SECRET = "cs~A1~relay-api-client-secret-value"
SEED = "rt-seed-relay-api-initial-refresh-token"


def private_file(path, text):
    path.write_text(text)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return str(path)


def oauth2(oauth, tmp_path, provider):
    o = {"provider": provider, "client_id": CLIENT_ID,
         "token_url": oauth.token_url(), "authorize_url": oauth.authorize_url(),
         "client_secret_file": private_file(tmp_path / "client-secret", CLIENT_SECRET),
         "refresh_token_file": private_file(tmp_path / "refresh-token", SEED),
         "ca_file": str(oauth.ca)}
    if provider == "microsoft":
        o["tenant"] = "contoso"
    return o


def gateway(make_gateway, oauth, tmp_path, provider, relay):
    support = dict(SUPPORT, notify={"acknowledgement": {"active": False}})
    support["oauth2"] = oauth2(oauth, tmp_path, provider)
    return make_gateway({"relay": relay, "outbound": {"retry_initial": "1s"},
                         "mailbox": [support, dict(SALES)]}, env={"MAILGATE_LOG": "debug"})


def post(g, path, body):
    return g.http("POST", path, token=g.token, headers={"Content-Type": "application/json"},
                  body=json.dumps(body).encode())


def reply(g, text: str) -> tuple[str, dict]:
    subject = f"Printer {unique()}"
    _m, t = g.stored(g.send(make_msg(subject, msgid=new_msgid(), from_=f"Alice <{ALICE}>")))
    r = post(g, f"/api/v1/tickets/{t['id']}/reply", {"text": text})
    assert r.status == 201, r.body
    return r.json()["message_id"], t


def wait_sent(g, mid) -> dict:
    deadline = time.time() + 60
    while True:
        e = g.api(f"/api/v1/outbound/{mid}")
        if e["state"] == "sent":
            return e
        assert time.time() < deadline, f"outbound {mid} is {e}:\n{g.log_tail(30)}"
        time.sleep(0.1)


def check_mime(raw: bytes, text: str, ticket: dict):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert ALICE in msg["To"], msg["To"]
    assert SENDER in msg["From"], msg["From"]
    assert msg["In-Reply-To"] and msg["Message-ID"], dict(msg)
    assert ticket["subject"] in msg["Subject"], msg["Subject"]
    body = msg.get_body(("plain",))
    assert text in body.get_content(), body.get_content()


def assert_no_secrets(g, oauth):
    s = oauth.state()
    logs = "".join(g.log_text(i) for i in range(1, g.starts + 1))
    assert "outbound relay" in logs, "the log is read"
    for secret in [CLIENT_SECRET, SEED, *s["issued_access_tokens"], *s["issued_refresh_tokens"]]:
        assert secret not in logs, "a token is in the log"


@pytest.fixture
def certs():
    return _certificates()


def test_replies_go_through_graph_sendmail_and_a_503_defers(make_gateway, certs, tmp_path):
    oauth = OAuthFake(tmp_path / "oauth-fake", certs, flavor="microsoft", client_id=CLIENT_ID,
                      client_secret=CLIENT_SECRET, refresh_tokens=[SEED])
    graph = FakeGraph(certs["cert.pem"], certs["key.pem"],
                      resolver=lambda t: t in oauth.state()["issued_access_tokens"])
    try:
        g = gateway(make_gateway, oauth, tmp_path, "microsoft", {
            "transport": "graph", "oauth2_mailbox": "support", "user": SENDER,
            "api_base": graph.base, "ca_file": str(oauth.ca)})
        mid, ticket = reply(g, "First answer through Graph.")
        e = wait_sent(g, mid)
        assert e["attempts"] == 1, e
        sent = graph.state.sendmail
        assert len(sent) == 1 and sent[0]["user"] == SENDER, sent
        assert sent[0]["content_type"].startswith("text/plain")
        check_mime(base64.b64decode(sent[0]["mime_b64"]), "First answer through Graph.", ticket)
        assert "https://graph.microsoft.com/Mail.Send" in oauth.state()["requests"][0]["scope"]

        # Graph stops taking the cached token: a 401, one refresh, sent.
        first = oauth.state()["issued_access_tokens"]
        assert len(first) == 1
        with graph.state.lock:
            graph.state.refused.add(first[0])
        mid, ticket = reply(g, "After a refused token.")
        e = wait_sent(g, mid)
        assert e["attempts"] == 1, e
        assert oauth.state()["refreshes"] == 2
        check_mime(base64.b64decode(graph.state.sendmail[1]["mime_b64"]), "After a refused token.",
                   ticket)

        # Graph answers 503 once: deferred, then sent on the next attempt.
        with graph.state.lock:
            graph.state.injections.append({"method": "POST", "path_contains": "/sendMail",
                                           "status": 503, "code": "ServiceUnavailable",
                                           "message": "Service unavailable", "retry_after": 1,
                                           "times": 1})
        mid, ticket = reply(g, "Second answer after a 503.")
        e = wait_sent(g, mid)
        assert e["attempts"] == 2, e
        sent = graph.state.sendmail
        assert len(sent) == 3, sent
        check_mime(base64.b64decode(sent[2]["mime_b64"]), "Second answer after a 503.", ticket)
        assert_no_secrets(g, oauth)
    finally:
        graph.stop()
        oauth.stop()


def test_replies_go_through_gmail_send_and_a_429_defers(make_gateway, certs, tmp_path):
    oauth = OAuthFake(tmp_path / "oauth-fake", certs, flavor="google", client_id=CLIENT_ID,
                      client_secret=CLIENT_SECRET, refresh_tokens=[SEED])
    gmail = GmailFake(str(oauth.dir / "cert.pem"), str(oauth.dir / "key.pem"), SENDER,
                      resolver=lambda t: t in oauth.state()["issued_access_tokens"]).start()
    try:
        g = gateway(make_gateway, oauth, tmp_path, "google", {
            "transport": "gmail", "oauth2_mailbox": "support",
            "api_base": gmail.url, "ca_file": str(oauth.ca)})
        mid, ticket = reply(g, "First answer through Gmail.")
        e = wait_sent(g, mid)
        assert e["attempts"] == 1, e
        assert len(gmail.state.sent) == 1
        check_mime(gmail.state.sent[0], "First answer through Gmail.", ticket)
        assert any(r.startswith("POST /upload/gmail/v1/users/me/messages/send?uploadType=media")
                   for r in gmail.state.requests), gmail.state.requests

        # Gmail stops taking the cached token: a 401, one refresh, sent.
        first = oauth.state()["issued_access_tokens"]
        assert len(first) == 1
        with gmail.state.lock:
            gmail.state.refused.add(first[0])
        mid, ticket = reply(g, "After a refused token.")
        e = wait_sent(g, mid)
        assert e["attempts"] == 1, e
        assert oauth.state()["refreshes"] == 2
        check_mime(gmail.state.sent[1], "After a refused token.", ticket)

        # Gmail answers 429 once: that attempt is deferred, the next sends.
        with gmail.state.lock:
            gmail.state.errors.append({"status": 429, "reason": "rateLimitExceeded",
                                       "match": "/messages/send", "count": 1, "retry_after": 1})
        mid, ticket = reply(g, "Second answer after a 429.")
        e = wait_sent(g, mid)
        assert e["attempts"] == 2, e
        assert len(gmail.state.sent) == 3
        check_mime(gmail.state.sent[2], "Second answer after a 429.", ticket)
        out = g.api(f"/api/v1/outbound/{mid}")
        assert all(t not in json.dumps(out) for t in oauth.state()["issued_access_tokens"])
        assert_no_secrets(g, oauth)
    finally:
        gmail.stop()
        oauth.stop()


def test_check_config_names_the_api_transport_keys(mailgate_bin, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f"""\
[server]
domains = ["example.test"]
data_dir = "{tmp_path}/data"

[[mailbox]]
name = "support"
addresses = ["support@example.test"]

[relay]
transport = "graph"
host = "smtp.example.test"
password_env = "RELAY_PW"
oauth2_mailbox = "support"
api_base = "http://graph.example.test/v1.0"
""")
    r = subprocess.run([mailgate_bin, "check-config", "--config", str(cfg)], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stdout + r.stderr
    for key in ["relay.host", "relay.password_env", "relay.api_base", "relay.user",
                "mailbox[0].oauth2"]:
        assert key in r.stderr, (key, r.stderr)
