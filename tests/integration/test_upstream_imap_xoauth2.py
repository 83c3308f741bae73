"""End to end through `mailgate serve`: an IMAP mailbox with [mailbox.oauth2]
logs in to a real Dovecot with SASL XOAUTH2. The access tokens come from the
fake authorization server (fakes/oauth_server.py, Microsoft flavour, HTTPS);
Dovecot's oauth2 passdb asks the introspection fake (fakes/introspection.py)
about each, which takes what the authorization server issued. A token that
expires at the server before its cached lifetime is over is refused, the
gateway refreshes once and logs in with the new one; no token is in the log."""

from __future__ import annotations

import os
import stat

import pytest

from dovecot import USER, Dovecot, mailbox, message_count, upstream, wait_until
from fakes.introspection import Introspection
from fakes.oauth_server import OAuthFake
from harness import SALES, SUPPORT
from imapbase import _certificates

CLIENT_ID = "0c1b7e52-6f2d-4d1e-9a55-3f8e2f0d4a11"
CLIENT_SECRET = "cs~X8q~imap-xoauth2-client-secret"
SEED = "rt-seed-imap-xoauth2-initial-refresh-token"


def private_file(path, text):
    path.write_text(text)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return str(path)


def raw(n: int) -> bytes:
    return (f"From: Customer {n} <c{n}@example.test>\r\nTo: support@example.test\r\n"
            f"Subject: oauth {n}\r\nMessage-ID: <xo{n}@example.test>\r\n\r\nbody {n}\r\n").encode()


@pytest.fixture
def peers(tmp_path):
    fake = OAuthFake(tmp_path / "oauth-fake", _certificates(), flavor="microsoft",
                     client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_tokens=[SEED])
    issued = lambda token: USER if token in fake.state()["issued_access_tokens"] else None  # noqa: E731
    intro = Introspection(resolver=issued).start()
    d = Dovecot(introspection_url=intro.url).start()
    yield fake, intro, d
    d.stop()
    intro.stop()
    fake.stop()


def test_imap_xoauth2_end_to_end_with_one_refresh_after_a_refusal(make_gateway, peers, tmp_path):
    fake, intro, d = peers
    d.save("INBOX", raw(1))
    support = dict(SUPPORT)
    support["upstream"] = upstream(d, "imap", "tls", password_env=None, auth="oauth2", poll_interval="1h")
    support["oauth2"] = {
        "provider": "microsoft", "client_id": CLIENT_ID, "tenant": "contoso",
        "token_url": fake.token_url(), "authorize_url": fake.authorize_url(),
        "client_secret_file": private_file(tmp_path / "client-secret", CLIENT_SECRET),
        "refresh_token_file": private_file(tmp_path / "refresh-token", SEED),
        "ca_file": str(fake.ca),
    }
    g = make_gateway({"mailbox": [support, dict(SALES)]}, env={"MAILGATE_LOG": "debug"})
    wait_until(lambda: message_count(g) == 1, 30, "the first message over XOAUTH2", g=g, d=d)
    first = fake.state()["issued_access_tokens"]
    assert len(first) == 1 and fake.state()["refreshes"] == 1
    assert intro.calls == [(first[0], True)], intro.calls
    assert mailbox(g)["last_error"] in (None, ""), mailbox(g)

    # The server stops taking the cached token (it expired there first).
    intro.expire(first[0])
    d.save("INBOX", raw(2))
    r = g.http_json("POST", "/api/v1/mailboxes/support/sync", {})
    assert r.status == 200, (r.status, g.log_tail(30))
    wait_until(lambda: message_count(g) == 2, 30, "the second message after a refresh", g=g, d=d)
    tokens = fake.state()["issued_access_tokens"]
    assert fake.state()["refreshes"] == 2 and len(tokens) == 2, fake.state()
    assert intro.calls[1:] == [(first[0], False), (tokens[1], True)], intro.calls
    assert all("Mailgate" in flags for _uid, flags in d.flags("INBOX")), d.flags("INBOX")

    state = fake.state()
    secrets = [CLIENT_SECRET, SEED, *state["issued_access_tokens"], *state["issued_refresh_tokens"]]
    logs = "".join(g.log_text(i) for i in range(1, g.starts + 1))
    assert "IMAP login" in logs, "the debug log is read"
    for secret in secrets:
        assert secret not in logs, "a token is in the log"
