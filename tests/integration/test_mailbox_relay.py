"""Each OAuth2 mailbox sends as itself: `[mailbox.relay]` end to end through
`mailgate serve`. Two mailboxes with their own `[mailbox.oauth2]` (each
against its own fake token server, fakes/oauth_server.py) send through Graph
(fakes/graph.py) as their own user with their own token; a third mailbox
without a relay of its own goes through the global `[relay]`, a real
Postfix (postfix.py). Then `mailgate test-relay --mailbox` on API relays:
Graph and Gmail (fakes/gmail.py) with a working token, a revoked one (a
clear error, exit code nonzero), and while `serve` holds the store; no
token or secret is ever in its output."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import stat
import time

import pytest

from dovecot import run_command
from fakes.gmail import GmailFake
from fakes.graph import FakeGraph
from fakes.oauth_server import OAuthFake
from harness import SALES, SUPPORT
from imapbase import _certificates
from mailmsg import make_msg, new_msgid, unique
from postfix import PASSWORD, PASSWORD_ENV, postfix_relay  # noqa: F401 - fixture

ALICE = "alice@relay.test"
BILLING = {"name": "billing", "addresses": ["billing@example.test"], "queue": "Billing"}
CLIENT_ID = "3c9d-mailbox-relay-client"
SECRETS = {"support": ("cs~support-client-secret-value", "rt-support-seed-refresh-token"),
           "sales": ("cs~sales-client-secret-value", "rt-sales-seed-refresh-token")}
QUIET = {"acknowledgement": {"active": False}}


def private_file(path, text):
    path.write_text(text)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return str(path)


@pytest.fixture
def certs():
    return _certificates()


@pytest.fixture
def oauth_fakes(certs, tmp_path):
    """One fake token server per mailbox: support (Microsoft), sales (the
    flavor each test asks for)."""
    made = []

    def make(name, flavor):
        secret, seed = SECRETS[name]
        o = OAuthFake(tmp_path / f"oauth-{name}", certs, flavor=flavor, client_id=CLIENT_ID,
                      client_secret=secret, refresh_tokens=[seed])
        made.append(o)
        return o

    yield make
    for o in made:
        o.stop()


def oauth2(oauth, tmp_path, name):
    secret, seed = SECRETS[name]
    o = {"provider": oauth.flavor, "client_id": CLIENT_ID,
         "token_url": oauth.token_url(), "authorize_url": oauth.authorize_url(),
         "client_secret_file": private_file(tmp_path / f"{name}-client-secret", secret),
         "refresh_token_file": private_file(tmp_path / f"{name}-refresh-token", seed),
         "ca_file": str(oauth.ca)}
    if oauth.flavor == "microsoft":
        o["tenant"] = "contoso"
    return o


def post(g, path, body):
    return g.http("POST", path, token=g.token, headers={"Content-Type": "application/json"},
                  body=json.dumps(body).encode())


def reply(g, mailbox: dict, text: str) -> tuple[int, dict]:
    """A customer's mail to `mailbox` opens a ticket; an agent's reply; its outbox id."""
    address = mailbox["addresses"][0]
    msg = make_msg(f"Printer {unique()}", msgid=new_msgid(), from_=f"Alice <{ALICE}>", to=address)
    _m, t = g.stored(g.send(msg, mail_from=ALICE, rcpts=(address,)))
    assert t["queue"] == mailbox["queue"], t
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


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def secrets_of(*fakes) -> list[str]:
    out = [s for pair in SECRETS.values() for s in pair]
    for o in fakes:
        s = o.state()
        out += s["issued_access_tokens"] + s["issued_refresh_tokens"]
    return out


def test_each_mailbox_sends_as_itself_and_the_others_through_the_global_relay(
        make_gateway, certs, tmp_path, oauth_fakes, postfix_relay):
    ms_support = oauth_fakes("support", "microsoft")
    ms_sales = oauth_fakes("sales", "microsoft")
    issued = lambda o: o.state()["issued_access_tokens"]  # noqa: E731
    graph = FakeGraph(certs["cert.pem"], certs["key.pem"],
                      resolver=lambda t: t in issued(ms_support) or t in issued(ms_sales))
    try:
        relay = {"transport": "graph", "api_base": graph.base, "ca_file": str(ms_support.ca)}
        support = dict(SUPPORT, notify=QUIET, oauth2=oauth2(ms_support, tmp_path, "support"),
                       relay=relay)
        # sales sends as a UPN of its own (not its address): `user` is honoured.
        sales = dict(SALES, notify=QUIET, oauth2=oauth2(ms_sales, tmp_path, "sales"),
                     relay=dict(relay, user="sales.team@contoso.test"))
        g = make_gateway({"relay": postfix_relay.relay_config(),
                          "outbound": {"retry_initial": "1s"},
                          "mailbox": [support, sales, dict(BILLING, notify=QUIET)]},
                         env={PASSWORD_ENV: PASSWORD, "MAILGATE_LOG": "debug"})
        before = len(postfix_relay.maildir_messages(ALICE))

        to_support, t_support = reply(g, SUPPORT, "Support answers through Graph.")
        to_sales, t_sales = reply(g, SALES, "Sales answers through Graph.")
        to_billing, t_billing = reply(g, BILLING, "Billing answers through Postfix.")
        for mid in (to_support, to_sales, to_billing):
            assert wait_sent(g, mid)["attempts"] == 1

        sent = {s["user"]: s for s in graph.state.sendmail}
        assert sorted(sent) == ["sales.team@contoso.test", "support@example.test"], sent
        # Each with its own mailbox's token, never the other's.
        assert sent["support@example.test"]["token"] in issued(ms_support)
        assert sent["support@example.test"]["token"] not in issued(ms_sales)
        assert sent["sales.team@contoso.test"]["token"] in issued(ms_sales)
        assert sent["sales.team@contoso.test"]["token"] not in issued(ms_support)
        for scope in (ms_support.state()["requests"][0]["scope"],
                      ms_sales.state()["requests"][0]["scope"]):
            assert "https://graph.microsoft.com/Mail.Send" in scope
        for who, ticket, text in [("support@example.test", t_support, "Support answers"),
                                  ("sales.team@contoso.test", t_sales, "Sales answers")]:
            msg = parse(base64.b64decode(sent[who]["mime_b64"]))
            assert msg["From"].addresses[0].addr_spec == \
                {"support@example.test": "support@example.test",
                 "sales.team@contoso.test": "sales@example.test"}[who]
            assert ticket["subject"] in msg["Subject"]
            assert text in msg.get_body(("plain",)).get_content()

        # billing has no relay of its own: the global [relay], a real Postfix.
        got = postfix_relay.wait_messages(ALICE, before + 1)
        delivered = [parse(m) for m in got[before:]]
        assert len(delivered) == 1, [m["Subject"] for m in delivered]
        assert delivered[0]["From"].addresses[0].addr_spec == "billing@example.test"
        assert t_billing["subject"] in delivered[0]["Subject"]
        assert len(graph.state.sendmail) == 2

        _, log = g.wait_log("[relay]")
        for name, kind in [("support", "[mailbox.relay]"), ("sales", "[mailbox.relay]"),
                           ("billing", "[relay]")]:
            assert any(f"mailbox={name}" in line and kind in line for line in log.splitlines()), \
                f"no start line for {name}:\n{log}"
        for secret in secrets_of(ms_support, ms_sales):
            assert secret not in log, "a token or secret is in the log"

        # While serve holds the store, test-relay says so and what to do.
        r = run_command(g, "test-relay", "--mailbox", "support")
        out = r.stdout + r.stderr
        assert r.returncode != 0, out
        assert "running mailgate holds the database" in out and "stop `mailgate serve`" in out, out
        assert "FAILED (busy)" in out, out
    finally:
        graph.stop()


def test_test_relay_checks_a_mailboxs_api_relay_with_its_token(
        make_gateway, certs, tmp_path, oauth_fakes):
    ms = oauth_fakes("support", "microsoft")
    google = oauth_fakes("sales", "google")
    graph = FakeGraph(certs["cert.pem"], certs["key.pem"],
                      resolver=lambda t: t in ms.state()["issued_access_tokens"])
    gmail = GmailFake(str(google.dir / "cert.pem"), str(google.dir / "key.pem"),
                      "sales@example.test",
                      resolver=lambda t: t in google.state()["issued_access_tokens"]).start()
    try:
        support = dict(SUPPORT, oauth2=oauth2(ms, tmp_path, "support"),
                       relay={"transport": "graph", "api_base": graph.base,
                              "ca_file": str(ms.ca)})
        sales = dict(SALES, oauth2=oauth2(google, tmp_path, "sales"),
                     relay={"transport": "gmail", "api_base": gmail.url,
                            "ca_file": str(google.ca)})
        g = make_gateway({"mailbox": [support, sales, dict(BILLING)]}, start=False)

        # Graph: a token, then one read-only request with it.
        r = run_command(g, "test-relay", "--mailbox", "support")
        out = r.stdout + r.stderr
        assert r.returncode == 0, out
        assert "OAuth2: access token obtained for mailbox support (graph)" in out, out
        assert 'folder "Sent Items"' in out, out
        assert out.rstrip().endswith("OK"), out
        token = ms.state()["issued_access_tokens"][0]
        checks = [q for q in graph.state.requests
                  if q["path"] == "/v1.0/users/support@example.test/mailFolders/sentitems"]
        assert len(checks) == 1 and checks[0]["method"] == "GET", graph.state.requests
        assert checks[0]["token"] == token
        assert graph.state.sendmail == [], "the check sends nothing"

        # Gmail: users.getProfile as "me" with sales's own token.
        r = run_command(g, "test-relay", "--mailbox", "sales")
        out2 = r.stdout + r.stderr
        assert r.returncode == 0, out2
        assert "Gmail took the token for me: sales@example.test" in out2, out2
        assert any(q.startswith("GET /gmail/v1/users/me/profile") for q in gmail.state.requests)
        assert gmail.state.sent == []

        # billing has no relay, and there is no [relay].
        r = run_command(g, "test-relay", "--mailbox", "billing")
        assert r.returncode != 0
        assert "FAILED (config): mailbox billing has no [mailbox.relay] and there is no [relay]" \
            in r.stdout, r.stdout
        r = run_command(g, "test-relay")
        assert r.returncode != 0
        assert "check one with --mailbox NAME" in r.stdout and "support, sales" in r.stdout, \
            r.stdout

        # The grant is revoked and Graph no longer takes the cached token:
        # the 401 forces a refresh, which the server refuses.
        ms.control(revoke="all")
        with graph.state.lock:
            graph.state.refused.add(token)
        r = run_command(g, "test-relay", "--mailbox", "support")
        out3 = r.stdout + r.stderr
        assert r.returncode != 0, out3
        assert "FAILED (auth)" in out3 and "invalid_grant" in out3, out3
        assert "AADSTS" in out3, out3  # the provider's own description
        assert "mailgate oauth authorize support" in out3, out3

        for secret in secrets_of(ms, google):
            for o in (out, out2, out3):
                assert secret not in o, "a token or secret is in test-relay's output"
    finally:
        gmail.stop()
        graph.stop()
