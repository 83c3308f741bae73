"""Agent replies through a real Postfix submission relay with SASL XOAUTH2,
end to end through `mailgate serve`: [relay] auth = "oauth2" sends as the
mailbox named by oauth2_mailbox, its token from that mailbox's
[mailbox.oauth2] (the fake authorization server, Microsoft flavour, HTTPS,
the SMTP scope); Postfix asks its Dovecot SASL, whose oauth2 passdb asks the
introspection fake about the token. A token the server stops taking is
refused, refreshed once, and the reply still goes; no token is in the log."""
from __future__ import annotations

import json
import os
import stat
import time

import pytest

from fakes.introspection import Introspection
from fakes.oauth_server import OAuthFake
from harness import SALES, SUPPORT
from imapbase import _certificates
from mailmsg import make_msg, new_msgid, unique
from postfix import Postfix

ALICE = "alice@relay.test"
SENDER = "support@example.test"
CLIENT_ID = "5b0e2a4c-3d7f-4e21-8c90-1a2b3c4d5e6f"
CLIENT_SECRET = "cs~R7t~smtp-xoauth2-client-secret"
SEED = "rt-seed-smtp-xoauth2-initial-refresh-token"


def private_file(path, text):
    path.write_text(text)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return str(path)


@pytest.fixture
def peers(tmp_path):
    fake = OAuthFake(tmp_path / "oauth-fake", _certificates(), flavor="microsoft",
                     client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_tokens=[SEED])
    issued = lambda token: SENDER if token in fake.state()["issued_access_tokens"] else None  # noqa: E731
    intro = Introspection(resolver=issued).start()
    relay = Postfix(introspection_url=intro.url).start()
    yield fake, intro, relay
    relay.close()
    intro.stop()
    fake.stop()


def post(g, path, body):
    return g.http("POST", path, token=g.token, headers={"Content-Type": "application/json"},
                  body=json.dumps(body).encode())


def reply_sent(g, text: str) -> dict:
    _m, t = g.stored(g.send(make_msg(f"Printer {unique()}", msgid=new_msgid(),
                                     from_=f"Alice <{ALICE}>")))
    r = post(g, f"/api/v1/tickets/{t['id']}/reply", {"text": text})
    assert r.status == 201, r.body
    mid = r.json()["message_id"]
    deadline = time.time() + 60
    while True:
        e = g.api(f"/api/v1/outbound/{mid}")
        if e["state"] == "sent":
            return e
        assert time.time() < deadline, f"outbound {mid} is {e}:\n{g.log_tail(30)}"
        time.sleep(0.1)


def test_replies_go_through_postfix_with_xoauth2_and_one_refresh(make_gateway, peers, tmp_path):
    fake, intro, relay = peers
    support = dict(SUPPORT, notify={"acknowledgement": {"active": False}})
    support["oauth2"] = {
        "provider": "microsoft", "client_id": CLIENT_ID, "tenant": "contoso",
        "token_url": fake.token_url(), "authorize_url": fake.authorize_url(),
        "client_secret_file": private_file(tmp_path / "client-secret", CLIENT_SECRET),
        "refresh_token_file": private_file(tmp_path / "refresh-token", SEED),
        "ca_file": str(fake.ca),
    }
    r = relay.relay_config(auth=False)
    r.update(auth="oauth2", user=SENDER, oauth2_mailbox="support")
    g = make_gateway({"relay": r, "outbound": {"retry_initial": "1s"},
                      "mailbox": [support, dict(SALES)]}, env={"MAILGATE_LOG": "debug"})

    reply_sent(g, "First answer over XOAUTH2.")
    got = relay.wait_messages(ALICE, 1)
    assert b"First answer over XOAUTH2." in got[-1]
    state = fake.state()
    assert state["refreshes"] == 1, state["requests"]
    assert "https://outlook.office.com/SMTP.Send" in state["requests"][0]["scope"], state
    first = state["issued_access_tokens"]
    assert intro.calls == [(first[0], True)], intro.calls

    # The server stops taking the cached token: refused, one refresh, sent.
    intro.expire(first[0])
    e = reply_sent(g, "Second answer after a refresh.")
    assert e["attempts"] == 1, e
    assert b"Second answer after a refresh." in relay.wait_messages(ALICE, 2)[-1]
    state = fake.state()
    tokens = state["issued_access_tokens"]
    assert state["refreshes"] == 2 and len(tokens) == 2, state
    assert intro.calls[1:] == [(first[0], False), (tokens[1], True)], intro.calls

    logs = "".join(g.log_text(i) for i in range(1, g.starts + 1))
    assert "relay session ready" in logs, "the debug log is read"
    for secret in [CLIENT_SECRET, SEED, *tokens, *state["issued_refresh_tokens"]]:
        assert secret not in logs, "a token is in the log"
