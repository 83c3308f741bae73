"""The XOAUTH2 test peers themselves: a private Dovecot with its oauth2
passdb (dovecot.py, `introspection_url=`) takes an access token the
introspection fake (fakes/introspection.py) issued and refuses one it
expired, with the JSON error challenge of XOAUTH2; the fake answers as RFC
7662 says and records every call. (The gateway's own XOAUTH2 is tested in
tests/imap_xoauth2_dovecot.rs and tests/smtp_xoauth2_postfix.rs.)"""
from __future__ import annotations

import base64
import imaplib
import json
import ssl
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from introspection import Introspection  # noqa: E402

from dovecot import PASSWORD, USER, Dovecot  # noqa: E402


@pytest.fixture
def introspection():
    fake = Introspection().start()
    yield fake
    fake.stop()


def xoauth2(user: str, token: str) -> bytes:
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def test_the_fake_answers_as_rfc_7662_says(introspection):
    token = introspection.issue("alice")

    def post(body: bytes, ctype="application/x-www-form-urlencoded"):
        req = urllib.request.Request(introspection.url, data=body,
                                     headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    status, doc = post(f"token={token}".encode())
    assert status == 200 and doc["active"] is True and doc["username"] == "alice", doc
    assert doc["exp"] > doc["iat"]
    assert post(b"token=never-issued") == (200, {"active": False})
    introspection.expire(token)
    assert post(f"token={token}".encode()) == (200, {"active": False})
    assert post(b"{}", "application/json")[0] == 400
    assert introspection.calls == [(token, True), ("never-issued", False), (token, False)]


def test_dovecot_takes_an_issued_token_and_refuses_an_expired_one(introspection):
    d = Dovecot(introspection_url=introspection.url).start()
    try:
        good = introspection.issue(USER)
        stale = introspection.issue(USER)
        introspection.expire(stale)
        ctx = ssl.create_default_context(cafile=d.ca_file)
        with imaplib.IMAP4_SSL("localhost", d.imaps_port, ssl_context=ctx) as imap:
            assert "AUTH=XOAUTH2" in imap.capabilities, imap.capabilities
            challenges = []

            def answer(challenge: bytes) -> bytes:
                # First the XOAUTH2 message; the error challenge gets an empty line.
                challenges.append(challenge)
                return xoauth2(USER, stale) if len(challenges) == 1 else b""

            with pytest.raises(imaplib.IMAP4.error):
                imap.authenticate("XOAUTH2", answer)
            error = json.loads(challenges[1])
            assert error["status"] == "401", error
            typ, _ = imap.authenticate("XOAUTH2", lambda _c: xoauth2(USER, good))
            assert typ == "OK"
        assert introspection.calls == [(stale, False), (good, True)]
        # Passwords still work for the same user next to OAuth2.
        with imaplib.IMAP4_SSL("localhost", d.imaps_port, ssl_context=ctx) as imap:
            assert imap.login(USER, PASSWORD)[0] == "OK"
        assert d.logins(USER) == 2
    finally:
        d.stop()
