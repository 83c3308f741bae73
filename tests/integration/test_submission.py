"""The submission endpoint end to end: Python smtplib and swaks log in
(AUTH PLAIN and LOGIN, STARTTLS and implicit TLS, the gateway's certificate
verified) and submit; the mail goes out through the private Postfix relay
(postfix.py) and is checked in its Maildir: the submitter's header lines
and body byte for byte, Reply-To per account policy, Bcc gone, Message-ID
and Date added only when missing. Refusals: AUTH before TLS, MAIL without
AUTH, wrong passwords (one reply text, a growing delay, a lockout that
ends), senders and From headers that are not the account's, accounts
bound to networks, and a battery of open-relay address forms on the
submission port (unauthenticated) and on the MX port. Send limits make
mail wait, never drop it; submissions continue tickets; the 250 survives a
SIGKILL; metrics move; no password reaches the debug log.

One Postfix and one gateway (submission.py's `sub_gw`) serve the module;
tests that fail logins use their own loopback source address, since the
failure throttle counts per client address.
"""

from __future__ import annotations

import base64
import difflib
import email
import email.policy
import email.utils
import re
import shutil
import subprocess
import time

import pytest

from clients import RawSMTPFrom
from harness import parse_data_reply
from mailmsg import crlf, dot_stuff, make_msg, new_msgid, unique
from submission import (  # noqa: F401 - fixtures
    ALICE, BILLING, BLOCK_S, BOB, CAROL, DAVE, DELAY_S, FAILURES_PER_IP, NET_OK, PASSWORDS, SALES,
    SUPPORT, WRONG_PASSWORD, find_delivered, make_submission_gateway, queued_id, relay_pf,
    secret_forms, stop, sub_gw)



def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def plain_token(user: str, password: str) -> str:
    return b64(f"\0{user}\0{password}")


def header(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def tls_session(g, source: str = "127.0.0.1") -> RawSMTPFrom:
    """A raw session on the STARTTLS port, after EHLO, STARTTLS, EHLO."""
    r = RawSMTPFrom(g.sub_port, source=source)
    assert r.reply()[0] == 220
    r.expect("EHLO crm.client.test", 250)
    r.expect("STARTTLS", 220)
    r.starttls(g.tls_context())
    r.expect("EHLO crm.client.test", 250)
    return r


def implicit_session(g, source: str = "127.0.0.1") -> RawSMTPFrom:
    r = RawSMTPFrom(g.subs_port, source=source, tls_ctx=g.tls_context())
    assert r.reply()[0] == 220
    r.expect("EHLO crm.client.test", 250)
    return r


def timed(r, line: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    code, text = r.cmd(line)
    return code, text, time.monotonic() - t0


def outbound_ids(g, **params) -> set:
    return {e["id"] for e in g.paged("/api/v1/outbound", "outbound", params)}


# ------------------------------------------------------ the send limit ---
# billing may send one message a minute. The burst goes in at the start of
# the module; the last test sees the waiting one go out (a minute later),
# so the wait overlaps the other tests.

@pytest.fixture(scope="module")
def billing_burst(sub_gw):
    ids = []
    for i in range(2):
        code, text = sub_gw.submit(make_msg(f"invoice {i} {unique()}", from_=BILLING, to=DAVE),
                                   mail_from=BILLING, rcpts=[DAVE], user="biller")
        assert code == 250, text
        ids.append(queued_id(text))
    return ids


def test_over_the_send_limit_a_submission_waits(sub_gw, relay_pf, billing_burst):
    first, second = billing_burst
    sub_gw.wait_outbound(first)
    e = sub_gw.wait_outbound(second, ("deferred",))
    assert e["last_error"] == "rate_limit:messages_per_window", e
    assert e["attempts"] == 0, e
    assert e["account"] == "biller" and e["mailbox"] == "billing", e
    assert e["next_attempt_ms"] > int(time.time() * 1000) + 30_000, e
    assert sub_gw.metrics().get("mailgate_outbound_deferred_total", mailbox="billing",
                                reason="rate_limit") >= 1
    time.sleep(0.5)
    assert len(relay_pf.maildir_messages(DAVE)) == 1


# ------------------------------------------------------- TLS and AUTH ---

def test_before_tls_no_auth_is_offered_and_mail_needs_auth(sub_gw):
    m0 = sub_gw.metrics()
    r = RawSMTPFrom(sub_gw.sub_port)
    try:
        assert r.reply()[0] == 220
        ehlo = r.expect("EHLO crm.client.test", 250).upper().splitlines()
        assert "STARTTLS" in ehlo, ehlo
        assert not any(line.startswith("AUTH") for line in ehlo), ehlo
        token = plain_token("crm", PASSWORDS["crm"])
        for line in (f"AUTH PLAIN {token}", "AUTH PLAIN", "AUTH LOGIN"):
            code, text = r.cmd(line)
            assert (code, text.split()[0]) == (538, "5.7.11"), f"{line}: {code} {text}"
        code, text = r.cmd(f"MAIL FROM:<{SUPPORT}>")
        assert (code, text.split()[0]) == (530, "5.7.0"), f"{code} {text}"
        # Inside TLS: AUTH is offered, MAIL still needs it, then works.
        r.expect("STARTTLS", 220)
        r.starttls(sub_gw.tls_context())
        ehlo = r.expect("EHLO crm.client.test", 250).upper().splitlines()
        auth = [line for line in ehlo if line.startswith("AUTH")]
        assert auth and set(auth[0].split()[1:]) == {"PLAIN", "LOGIN"}, ehlo
        assert "STARTTLS" not in ehlo
        code, text = r.cmd(f"MAIL FROM:<{SUPPORT}>")
        assert (code, text.split()[0]) == (530, "5.7.0"), f"{code} {text}"
        r.expect(f"AUTH PLAIN {token}", 235)
        r.expect(f"MAIL FROM:<{SUPPORT}>", 250)
    finally:
        r.close()
    # The plain-text AUTH attempts were never checked: only the one inside TLS counted.
    m1 = sub_gw.metrics()
    for outcome, n in (("accepted", 1), ("rejected", 0), ("blocked", 0)):
        assert m1.get("mailgate_submission_auth_total", outcome=outcome) - \
            m0.get("mailgate_submission_auth_total", outcome=outcome) == n, outcome


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
def test_smtplib_auth_plain_and_login(sub_gw, relay_pf, implicit):
    """smtplib with the gateway's certificate as the only CA (a client that
    did not verify would not notice a wrong one)."""
    for mech in ("PLAIN", "LOGIN"):
        marker = unique(f"smtplib-{mech}")
        with sub_gw.submit_client(None, implicit=implicit) as s:
            assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
            assert s.sock.getpeercert()["subjectAltName"], "the certificate was not verified"
            assert {"PLAIN", "LOGIN"} <= set(s.esmtp_features["auth"].upper().split())
            s.user, s.password = "CRM", PASSWORDS["crm"]  # user names ignore case
            if mech == "PLAIN":
                code, text = s.auth("PLAIN", s.auth_plain)
            else:
                code, text = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
            assert code == 235, f"{mech}: {code} {text!r}"
            s.sendmail(SUPPORT, [ALICE], make_msg(marker, from_=f"CRM <{SUPPORT}>", to=ALICE))
        got = find_delivered(relay_pf, ALICE, marker.encode())
        assert len(got) == 1
        assert header(got[0])["X-Mailgate-Account"] == "crm"


def swaks(g, *args) -> subprocess.CompletedProcess:
    exe = shutil.which("swaks")
    assert exe, "swaks is not installed (scripts/install-test-deps.sh installs it)"
    cmd = [exe, "--server", "127.0.0.1", "--tls-verify", "--tls-ca-path", str(g.cert_path),
           "--tls-sni", "localhost", "--ehlo", "crm.client.test", "--timeout", "60", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("mode, mech", [("--tls", "PLAIN"), ("--tls", "LOGIN"),
                                        ("--tlsc", "PLAIN"), ("--tlsc", "LOGIN")])
def test_swaks_auth_with_certificate_verification(sub_gw, relay_pf, mode, mech):
    port = sub_gw.sub_port if mode == "--tls" else sub_gw.subs_port
    marker = unique("swaks")
    p = swaks(sub_gw, "--port", str(port), mode, "-a", mech, "-au", "crm", "-ap", PASSWORDS["crm"],
              "--from", SUPPORT, "--to", ALICE, "--header", f"Subject: {marker}",
              "--header", f"From: {SUPPORT}", "--body", "sent by swaks")
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert re.search(r"<~\s+235 2\.7\.0 ", out), out
    assert re.search(r"<~\s+250 2\.0\.0 Ok: queued as \d+", out), out
    got = find_delivered(relay_pf, ALICE, marker.encode())
    assert b"sent by swaks" in got[0]
    # With a CA that did not sign the gateway's certificate, swaks refuses it.
    p = swaks(sub_gw, "--port", str(port), mode, "-a", mech, "-au", "crm", "-ap", PASSWORDS["crm"],
              "--tls-ca-path", relay_pf.ca_file, "--from", SUPPORT, "--to", ALICE)
    # (A reply line, not any "235": the port number swaks prints may hold it.)
    assert p.returncode != 0 and not re.search(r"<[~-]\s+235 ", p.stdout), p.stdout + p.stderr


def test_wrong_logins_one_reply_a_growing_delay_then_a_lockout_that_ends(sub_gw):
    """From 127.0.0.30: wrong password, unknown user: the same 535 text,
    each answered later than the one before; the 3rd failure blocks the
    client (421 after a longer delay still, closed), the right password is
    refused while blocked (on both listeners), accepted after auth_block,
    and a success starts the count over."""
    src = "127.0.0.30"
    m0 = sub_gw.metrics()
    # The delays are compared on crm's attempts: an unknown user is checked
    # against a dummy hash of hash-password's cost, slower than the test
    # accounts' cheap hashes.
    attempts = [("crm", WRONG_PASSWORD), ("nosuch-user", PASSWORDS["crm"])]
    assert len(attempts) == FAILURES_PER_IP - 1
    replies, delays = [], []
    r = tls_session(sub_gw, src)
    try:
        for user, password in attempts:
            code, text, took = timed(r, f"AUTH PLAIN {plain_token(user, password)}")
            assert (code, text.split()[0]) == (535, "5.7.8"), f"{user}: {code} {text}"
            replies.append(text)
            delays.append(took)
        # The last failure allowed, over LOGIN: the block, after the
        # longest delay yet.
        r.expect("AUTH LOGIN", 334)
        r.expect(b64("crm"), 334)
        t_last = time.monotonic()
        code, text, took = timed(r, b64(WRONG_PASSWORD))
        delays.append(took)
        assert code == 421 and text.startswith("4.7.0"), f"{code} {text}"
        assert r.closed_by_server(), "the session stays open after the lockout"
    finally:
        r.close()
    assert len(set(replies)) == 1, f"the 535 text tells the cases apart: {replies}"
    assert delays[1] > delays[0], delays
    assert delays[2] - delays[0] >= DELAY_S, f"the delay does not grow: {delays}"

    # Blocked: the right password is refused, on the implicit-TLS port too.
    for implicit in (False, True):
        r = implicit_session(sub_gw, src) if implicit else tls_session(sub_gw, src)
        try:
            code, text = r.cmd(f"AUTH PLAIN {plain_token('crm', PASSWORDS['crm'])}")
            assert code == 421 and text.startswith("4.7.0"), f"{code} {text}"
            assert r.closed_by_server()
        finally:
            r.close()
    m1 = sub_gw.metrics()
    assert m1.get("mailgate_submission_auth_total", outcome="rejected") - \
        m0.get("mailgate_submission_auth_total", outcome="rejected") == 2
    assert m1.get("mailgate_submission_auth_total", outcome="blocked") - \
        m0.get("mailgate_submission_auth_total", outcome="blocked") == 3

    # Another client is not affected meanwhile.
    sub_gw.submit_client("crm", source="127.0.0.31").quit()

    # The block runs from the failure that reached the limit (its answer
    # came after the delay).
    time.sleep(max(0.0, t_last + BLOCK_S + 0.3 - time.monotonic()))
    with sub_gw.submit_client("crm", source=src) as s:
        assert s.mail(SUPPORT)[0] == 250
    # The success cleared the count: the next failure waits one base delay again.
    r = tls_session(sub_gw, src)
    try:
        code, _, took = timed(r, f"AUTH PLAIN {plain_token('crm', WRONG_PASSWORD)}")
        assert code == 535
        assert took < delays[2] - DELAY_S / 2, (took, delays)
    finally:
        r.close()
    m2 = sub_gw.metrics()
    assert m2.get("mailgate_submission_auth_total", outcome="accepted") - \
        m0.get("mailgate_submission_auth_total", outcome="accepted") == 2


def test_an_account_bound_to_a_network_fails_like_a_wrong_password_elsewhere(sub_gw, relay_pf):
    r = tls_session(sub_gw, "127.0.0.40")
    try:
        code, right_elsewhere = r.cmd(f"AUTH PLAIN {plain_token('locked', PASSWORDS['locked'])}")
        assert code == 535, right_elsewhere
        code, wrong = r.cmd(f"AUTH PLAIN {plain_token('locked', WRONG_PASSWORD)}")
        assert code == 535 and wrong == right_elsewhere, (wrong, right_elsewhere)
    finally:
        r.close()
    marker = unique("from-its-network")
    code, text = sub_gw.submit(make_msg(marker, from_=SUPPORT, to=ALICE), user="locked",
                               source=NET_OK)
    assert code == 250, text
    find_delivered(relay_pf, ALICE, marker.encode())


# ------------------------------------------------- senders and From ---

def test_an_envelope_sender_not_of_the_account_is_refused(sub_gw):
    m0 = sub_gw.metrics()
    refused = [SALES, BILLING, "support@other.test", "", "support%relay.test@example.test",
               "support@example.test.evil.test", "support@sub.example.test", '"support"@example.test',
               "@example.test:sales@example.test"]
    with sub_gw.submit_client("crm") as s:
        for sender in refused:
            code, text = s.docmd(f"MAIL FROM:<{sender}>")
            assert (code, text.split()[0]) == (550, b"5.7.1"), f"<{sender}>: {code} {text!r}"
        # The account's own address, in any case, is fine.
        assert s.mail("SUPPORT@Example.TEST")[0] == 250
    m1 = sub_gw.metrics()
    assert m1.get("mailgate_submission_messages_total", account="crm", outcome="refused_sender") \
        - m0.get("mailgate_submission_messages_total", account="crm",
                 outcome="refused_sender") == len(refused)


@pytest.mark.parametrize("from_", [
    SALES,
    "Support <support@other.test>",
    '"support@example.test" <evil@other.test>',
    f"{SUPPORT}, Mallory <mallory@other.test>",
    None,
], ids=["other-mailbox", "foreign-domain", "display-name-trick", "two-addresses", "no-from"])
def test_a_from_not_of_the_account_is_refused(sub_gw, relay_pf, from_):
    before = outbound_ids(sub_gw, account="crm")
    marker = unique("from")
    with sub_gw.submit_client("crm") as s:
        assert s.mail(SUPPORT)[0] == 250  # the envelope sender is allowed
        assert s.rcpt(ALICE)[0] == 250
        code, text = s.data(make_msg(marker, from_=from_, to=ALICE))
    assert (code, text.split()[0]) == (550, b"5.7.1"), f"{code} {text!r}"
    assert outbound_ids(sub_gw, account="crm") == before
    time.sleep(0.3)
    assert not [m for m in relay_pf.maildir_messages(ALICE) if marker.encode() in m]


# -------------------------------------------------- open relay battery ---
# Address forms that tricked relays into forwarding, all aimed at
# alice@relay.test (a real mailbox behind the Postfix relay), with what
# the MX may do with each: "local" (a served address: stored here, never
# forwarded) or "refused".
BATTERY = [
    ("alice@relay.test", "refused"),
    ("alice@RELAY.TEST", "refused"),
    ("alice@relay.test.", "refused"),
    ("ALICE@Relay.Test.", "refused"),
    ("alice%relay.test@example.test", "local"),
    ("alice%relay.test@EXAMPLE.TEST", "local"),
    ('"alice%relay.test"@example.test', "local"),
    ("alice%relay.test", "refused"),
    ("alice%relay.test@[127.0.0.1]", "refused"),
    ("relay.test!alice@example.test", "local"),
    ("relay.test!alice", "refused"),
    ("relay.test!alice@[127.0.0.1]", "refused"),
    ('"alice@relay.test"@example.test', "local"),
    ('"alice@relay.test"', "refused"),
    ('"alice@relay.test"@relay.test', "refused"),
    ("@example.test:alice@relay.test", "refused"),
    ("@example.test,@localhost:alice@relay.test", "refused"),
    ("@relay.test:support@example.test", "local"),
    ("alice@relay.test@example.test", "refused"),
    ("alice@example.test@relay.test", "refused"),
    ("alice@[127.0.0.1]", "refused"),
    ("alice@[IPv6:::1]", "refused"),
    ("alice@127.0.0.1", "refused"),
    ("alice@relay.test%example.test", "refused"),
    ("alice@example.test.relay.test", "refused"),
    ("alice@sub.example.test", "refused"),
    ("alice@localhost", "refused"),
    ("alice", "refused"),
    ("alice@relay.test ", "refused"),
    ('"alice\\@relay.test"@example.test', "local"),
    ("support@EXAMPLE.TEST", "local"),
    ("sales@example.test", "local"),
]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "starttls"])
def test_unauthenticated_relay_battery_on_the_submission_port(sub_gw, relay_pf, tls):
    before = len(relay_pf.maildir_messages(ALICE)), outbound_ids(sub_gw)
    for rcpt, _ in BATTERY:
        r = tls_session(sub_gw) if tls else RawSMTPFrom(sub_gw.sub_port)
        try:
            if not tls:
                assert r.reply()[0] == 220
                r.expect("EHLO relay.tester.test", 250)
            code, text = r.cmd(f"MAIL FROM:<{SUPPORT}>")
            assert (code, text.split()[0]) == (530, "5.7.0"), f"MAIL: {code} {text}"
            code, text = r.cmd(f"RCPT TO:<{rcpt}>")
            assert 500 <= code < 600, f"RCPT TO:<{rcpt}> unauthenticated: {code} {text}"
            code, text = r.cmd("DATA")
            assert 500 <= code < 600, f"DATA after <{rcpt}>: {code} {text}"
        finally:
            r.close()
    time.sleep(0.5)
    assert (len(relay_pf.maildir_messages(ALICE)), outbound_ids(sub_gw)) == before


def test_relay_battery_on_the_mx_port(sub_gw, relay_pf):
    """The MX forwards nothing: each form is refused, or accepted only as a
    served address of example.test and stored in one of our mailboxes."""
    before = len(relay_pf.maildir_messages(ALICE)), outbound_ids(sub_gw)
    outcomes = {}
    for rcpt, expected in BATTERY:
        with sub_gw.raw_smtp() as r:
            r.expect("EHLO relay.tester.test", 250)
            r.expect("MAIL FROM:<mallory@client.test>", 250)
            code, text = r.cmd(f"RCPT TO:<{rcpt}>")
            outcomes[rcpt] = (code, text)
            if code != 250:
                assert expected == "refused", f"<{rcpt}>: {code} {text}"
                assert 500 <= code < 600, f"<{rcpt}>: {code} {text}"
                continue
            assert expected == "local", f"<{rcpt}> accepted by the MX: {code} {text}"
            r.expect("DATA", 354)
            r.send(dot_stuff(make_msg(f"battery {unique()}", from_="Mallory <mallory@client.test>",
                                      to=ALICE)))
            reply = parse_data_reply(*r.reply())
        _, t = sub_gw.stored(reply)
        assert t["mailbox"] in ("support", "sales"), (rcpt, t)
    # Foreign domains get the relay refusal itself.
    for rcpt in ("alice@relay.test", "alice@RELAY.TEST", "@example.test:alice@relay.test",
                 "alice@[127.0.0.1]", "alice@sub.example.test"):
        code, text = outcomes[rcpt]
        assert (code, text.split()[0]) == (550, "5.7.1"), f"<{rcpt}>: {code} {text}"
    time.sleep(0.5)
    assert (len(relay_pf.maildir_messages(ALICE)), outbound_ids(sub_gw)) == before


# ------------------------------------------------------ header policy ---

SUBMITTED_HEAD = (
    b'From:   "Support  Team"   <support@example.test>\r\n'
    b"To: Alice <alice@relay.test>\r\n"
    b"Subject:    odd   spacing {marker}  \r\n"
    b"Date: Tue, 1 Dec 2026 10:00:00 +0100\r\n"
    b"Message-ID: <{msgid}>\r\n"
    b"Bcc: Carol\r\n <carol@relay.test>\r\n"
    b"X-Folded: first part\r\n\tsecond part\r\n    third part\r\n"
    b"x-lower-case:no-space-after-colon\r\n"
    b"X-Empty:\r\n"
    b"X-Mailgate-Ticket: 424242\r\n"
    b"List-Unsubscribe: <mailto:unsubscribe@example.test?subject=unsubscribe>,\r\n"
    b" <https://example.test/unsubscribe?id=1&x=%20y>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"List-Id: Shop notices <notices.example.test>\r\n"
    b"X-Custom-Trace: by crm-01 (v1.2.3) ; id=abc\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative;\r\n\tboundary="=_b0undary.1"\r\n'
)
SUBMITTED_BODY = (
    b"This is a MIME message.\r\n"
    b"\r\n"
    b"--=_b0undary.1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Your order =3D 42 ships today.  \r\n"
    b". a line starting with a dot\r\n"
    b"..two dots\r\n"
    b"\r\n"
    b"--=_b0undary.1\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>Your order ships <b>today</b>.</p>\r\n"
    b"--=_b0undary.1--\r\n"
    b"\r\n"
    b"epilogue\r\n"
)
# What Postfix (virtual delivery) and the gateway put on top of a submitted message.
ADDED_ON_TOP = {"return-path", "x-original-to", "delivered-to", "received", "x-mailgate-account",
                "x-mailgate-message-id", "x-mailgate-ticket", "x-mailer", "reply-to",
                "message-id", "date"}


def split_fields(head: bytes) -> list[bytes]:
    """Header fields, each with its folded continuation lines (LF line ends)."""
    fields: list[bytes] = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\n" + line
        else:
            fields.append(line)
    return fields


def test_submitted_headers_and_body_arrive_byte_for_byte_and_bcc_only_in_the_envelope(
        sub_gw, relay_pf):
    marker, msgid = unique("bytes"), new_msgid("crm.example.test")
    head = SUBMITTED_HEAD.replace(b"{marker}", marker.encode()).replace(b"{msgid}", msgid.encode())
    code, text = sub_gw.submit(head + b"\r\n" + SUBMITTED_BODY, rcpts=[ALICE, CAROL])
    assert code == 250, text
    oid = queued_id(text)
    e = sub_gw.wait_outbound(oid)
    assert e["rcpt_to"] == [ALICE, CAROL] and e["ticket_id"] is None, e
    # What we expect after the additions on top: the header minus Bcc and
    # the submitter's X-Mailgate-* field, every other byte as sent.
    kept = [f for f in split_fields(head.replace(b"\r\n", b"\n").rstrip(b"\n"))
            if not f.lower().startswith((b"bcc:", b"x-mailgate-"))]
    expected_tail = b"\n".join(kept) + b"\n\n" + SUBMITTED_BODY.replace(b"\r\n", b"\n")
    for rcpt in (ALICE, CAROL):
        got = find_delivered(relay_pf, rcpt, marker.encode())
        assert len(got) == 1, f"{rcpt} got {len(got)} copies"
        raw = got[0]
        if not raw.endswith(expected_tail):
            diff = "\n".join(difflib.unified_diff(expected_tail.decode().split("\n"),
                                                  raw.decode().split("\n")[-len(kept) - 25:],
                                                  lineterm=""))
            raise AssertionError(f"{rcpt}: the submitted bytes changed:\n{diff}")
        top = raw[:len(raw) - len(expected_tail)]
        assert top.endswith(b"\n")
        names = [f.split(b":", 1)[0].decode().lower() for f in split_fields(top.rstrip(b"\n"))]
        assert set(names) <= ADDED_ON_TOP, names
        for once in ("x-mailgate-account", "x-mailgate-message-id", "x-mailer", "reply-to"):
            assert names.count(once) == 1, (once, names)
        # Present in the submission: not added again.
        assert "message-id" not in names and "date" not in names, names
        # No ticket: no X-Mailgate-Ticket, and the forged one is gone.
        assert "x-mailgate-ticket" not in names and b"424242" not in raw
        msg = header(raw)
        assert msg["Bcc"] is None
        assert msg["X-Mailgate-Account"] == "crm"
        assert msg["X-Mailgate-Message-Id"] == str(oid)
        assert msg["X-Mailer"].startswith("mailgate/")
        assert msg["Reply-To"] == SUPPORT
        received = [str(v) for v in msg.get_all("Received")]
        # Ours is the one right above the submitter's fields, after Postfix's.
        assert re.match(r"from crm\.client\.test \(\[127\.0\.0\.1\]\) by localhost with ESMTPSA; ",
                        received[-1]), received
        assert "crm" not in received[-1].replace("crm.client.test", ""), "the login is in Received"


def reply_to_case(g, postfix, user, sender, own_reply_to):
    marker = unique(f"rt-{user}")
    extra = [("Reply-To", own_reply_to)] if own_reply_to else []
    code, text = g.submit(make_msg(marker, from_=sender, to=BOB, headers=extra), mail_from=sender,
                          rcpts=[BOB], user=user)
    assert code == 250, text
    msg = header(find_delivered(postfix, BOB, marker.encode())[0])
    return [str(v) for v in msg.get_all("Reply-To") or []]


@pytest.mark.parametrize("user, sender, own, expected", [
    ("crm", SUPPORT, None, [SUPPORT]),
    ("crm", SUPPORT, "Helpdesk <helpdesk@client.test>", ["Helpdesk <helpdesk@client.test>"]),
    ("shop", SALES, None, [SALES]),
    ("shop", SALES, "Shop <noreply@shop.test>", [SALES]),
    ("monitor", SUPPORT, None, []),
    ("monitor", SUPPORT, "Ops <ops@client.test>", ["Ops <ops@client.test>"]),
], ids=["set_when_absent-none", "set_when_absent-own", "force-none", "force-own", "keep-none",
        "keep-own"])
def test_reply_to_per_account_policy(sub_gw, relay_pf, user, sender, own, expected):
    assert reply_to_case(sub_gw, relay_pf, user, sender, own) == expected


def test_message_id_and_date_are_added_only_when_missing(sub_gw, relay_pf):
    marker = unique("no-ids")
    raw = crlf(f"From: {SUPPORT}\r\nTo: {ALICE}\r\nSubject: {marker}\r\n\r\nno id, no date\r\n")
    t0 = time.time()
    code, text = sub_gw.submit(raw)
    assert code == 250, text
    oid = queued_id(text)
    msg = header(find_delivered(relay_pf, ALICE, marker.encode())[0])
    assert len(msg.get_all("Message-ID")) == 1 and len(msg.get_all("Date")) == 1
    assert msg["Message-ID"] == f"<mailgate-{oid}@example.test>", msg["Message-ID"]
    date = email.utils.parsedate_to_datetime(msg["Date"]).timestamp()
    assert t0 - 5 < date < time.time() + 5, msg["Date"]
    # With both present (and a Message-ID in another form): kept as they were.
    marker, msgid = unique("ids"), new_msgid("crm.example.test")
    sent = make_msg(marker, from_=SUPPORT, to=ALICE, msgid=msgid)
    code, _ = sub_gw.submit(sent)
    assert code == 250
    msg = header(find_delivered(relay_pf, ALICE, marker.encode())[0])
    assert msg.get_all("Message-ID") == [f"<{msgid}>"]
    sent_date = header(sent)["Date"]
    assert [str(d) for d in msg.get_all("Date")] == [str(sent_date)]


# ------------------------------------------------------------ tickets ---

def test_a_submission_answering_a_ticket_is_stored_on_it(sub_gw, relay_pf):
    # Alice writes in over the MX: a ticket.
    first = new_msgid("relay.test")
    customer, t = sub_gw.stored(sub_gw.send(make_msg(f"Order question {unique()}", msgid=first,
                                                     from_=f"Alice <{ALICE}>")))
    # The CRM answers In-Reply-To her message.
    marker = unique("crm-answer")
    code, text = sub_gw.submit(make_msg(f"Re: {marker}", from_=SUPPORT, to=ALICE,
                                        in_reply_to=first, references=[first]))
    assert code == 250, text
    assert text.endswith(f" on ticket {t['number']}"), text
    oid = queued_id(text)
    # ... and, naming it by the subject tag only.
    tagged = unique("tagged")
    code, text = sub_gw.submit(make_msg(f"{t['tag']} status {tagged}", from_=SUPPORT, to=ALICE))
    assert code == 250 and text.endswith(f" on ticket {t['number']}"), text
    oid2 = queued_id(text)
    for o in (oid, oid2):
        sub_gw.wait_outbound(o)
    ticket = sub_gw.ticket(t["id"])
    mine = {m["id"]: m for m in ticket["messages"]}
    for o in (oid, oid2):
        assert o in mine, f"submission {o} not on ticket {t['id']}: {list(mine)}"
        m = mine[o]
        assert (m["direction"], m["source"]) == ("outbound", "submission"), m
        assert m["delivery"]["state"] == "sent" and m["delivery"]["account"] == "crm", m
        assert m["delivery"]["ticket_id"] == t["id"], m
    assert sub_gw.outbound(oid)["ticket_id"] == t["id"]
    delivered = header(find_delivered(relay_pf, ALICE, marker.encode())[0])
    assert delivered["X-Mailgate-Ticket"] == t["tag"], delivered["X-Mailgate-Ticket"]
    # Alice's answer to the CRM's message threads onto the same ticket.
    answer = make_msg("thanks", from_=f"Alice <{ALICE}>", in_reply_to=delivered["Message-ID"][1:-1])
    _, t2 = sub_gw.stored(sub_gw.send(answer))
    assert t2["id"] == t["id"]
    assert customer["ticket_id"] == t["id"]


def test_a_submission_naming_no_ticket_is_in_the_outbound_log(sub_gw, relay_pf):
    marker = unique("no-ticket")
    code, text = sub_gw.submit(make_msg(f"Re: {marker}", from_=f"Shop <{SALES}>", to=ALICE,
                                        in_reply_to=new_msgid("nowhere.test")),
                               mail_from=SALES, user="shop")
    assert code == 250 and " on ticket " not in text, text
    oid = queued_id(text)
    sub_gw.wait_outbound(oid)
    entries = {e["id"]: e for e in sub_gw.paged("/api/v1/outbound", "outbound", {"account": "shop"})}
    assert oid in entries, entries
    e = entries[oid]
    assert e["account"] == "shop" and e["ticket_id"] is None and e["mailbox"] == "sales", e
    assert e["mail_from"] == SALES and e["rcpt_to"] == [ALICE] and e["size"] > 0, e
    assert all(x["account"] == "shop" for x in entries.values())
    assert oid not in {e["id"] for e in sub_gw.paged("/api/v1/outbound", "outbound",
                                                     {"account": "crm"})}
    assert "X-Mailgate-Ticket" not in header(find_delivered(relay_pf, ALICE, marker.encode())[0])


# ------------------------------------------------------------- metrics ---

def test_metrics_move(sub_gw, relay_pf):
    m0 = sub_gw.metrics()
    for name in ("mailgate_submission_sessions_active", "mailgate_submission_auth_total"):
        assert m0.has(name), name
    assert m0.types.get("mailgate_submission_sessions_active") == "gauge"

    def wait_active(n):
        deadline = time.monotonic() + 20
        while sub_gw.metrics().get("mailgate_submission_sessions_active") != n:
            assert time.monotonic() < deadline, "sessions_active does not follow"
            time.sleep(0.05)

    wait_active(0)
    a = sub_gw.submit_client("monitor")
    b = sub_gw.submit_client(None, implicit=True)
    wait_active(2)
    marker = unique("metrics")
    a.sendmail(SUPPORT, [ALICE], make_msg(marker, from_=SUPPORT, to=ALICE))
    code, _ = a.docmd(f"MAIL FROM:<{SALES}>")
    assert code == 550
    a.quit()
    b.quit()
    wait_active(0)
    m1 = sub_gw.metrics()
    assert m1.get("mailgate_submission_auth_total", outcome="accepted") - \
        m0.get("mailgate_submission_auth_total", outcome="accepted") == 1
    for outcome, n in (("queued", 1), ("refused_sender", 1)):
        assert m1.get("mailgate_submission_messages_total", account="monitor", outcome=outcome) - \
            m0.get("mailgate_submission_messages_total", account="monitor", outcome=outcome) == n
    find_delivered(relay_pf, ALICE, marker.encode())


# --------------------------------------------------------- durability ---

def test_the_250_survives_a_sigkill(mailgate_bin, tmp_path, relay_pf):
    """The relay is unreachable at first, so the mail cannot have left when
    the gateway is killed right after its 250; restarted with the relay
    back, it delivers the message, once."""
    from harness import free_port
    dead = free_port()
    g = make_submission_gateway(mailgate_bin, tmp_path / "killed", relay_pf,
                                relay=relay_pf.relay_config(port=dead))
    try:
        marker = unique("sigkill")
        with g.submit_client("crm") as s:
            s.mail(SUPPORT)
            s.rcpt(ALICE)
            code, text = s.data(make_msg(marker, from_=SUPPORT, to=ALICE))
            g.proc.kill()  # SIGKILL, before the client even says QUIT
            g.proc.wait(10)
        assert code == 250, text
        oid = queued_id(text.decode())
        cfg = g.config_path.read_text()
        assert f"port = {dead}\n" in cfg
        g.config_path.write_text(cfg.replace(f"port = {dead}\n",
                                             f"port = {relay_pf.submission_port}\n"))
        g.start()
        e = g.wait_outbound(oid, timeout=60)
        assert e["account"] == "crm"
        time.sleep(1.5)
        assert len(find_delivered(relay_pf, ALICE, marker.encode())) == 1
    finally:
        stop(g)


# ------------------------------------------------------- at the end ---

def test_zz_the_waiting_submission_goes_out_after_the_window(sub_gw, relay_pf, billing_burst):
    first, second = billing_burst
    sent_first = sub_gw.wait_outbound(first)
    e = sub_gw.wait_outbound(second, timeout=100)
    assert e["attempts"] == 1 and e["relay_reply"].startswith("250 "), e
    # Not before the window let it (a minute after the first went out).
    def at(x):
        return time.mktime(time.strptime(x["finished_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert at(e) - at(sent_first) >= 59, (sent_first, e)
    got = relay_pf.wait_messages(DAVE, 2)
    assert len(got) == 2
    assert sorted(header(m)["Subject"].split()[1] for m in got) == ["0", "1"]


def test_zz_no_password_in_the_debug_log(sub_gw):
    log = "".join(sub_gw.log_text(i) for i in range(1, sub_gw.starts + 1))
    assert " DEBUG " in log, "the debug level was not in force"
    assert "submission login" in log and "submission login failed" in log
    for user, password in list(PASSWORDS.items()) + [("crm", WRONG_PASSWORD),
                                                      ("nosuch-user", PASSWORDS["crm"])]:
        for form in secret_forms(user, password):
            assert form not in log, f"{form!r} is in the log"
