"""SMTP protocol: EHLO, TLS (smtplib and swaks), routing, size limits,
smuggling, bare LF, STARTTLS injection, idle timeout, pipelining."""

import shutil
import smtplib
import ssl
import subprocess

import pytest

from harness import RawSMTP, parse_data_reply
from mailmsg import dot_stuff, make_msg, new_msgid, unique

MAX = 1048576  # limits.max_message_size of the test config


def raw_transaction(r: RawSMTP, mail_from: str, rcpt: str = "support@example.test"):
    r.expect(f"MAIL FROM:<{mail_from}>", 250)
    r.expect(f"RCPT TO:<{rcpt}>", 250)
    r.expect("DATA", 354)


# ------------------------------------------------------------------ EHLO ---

def test_greeting_and_ehlo_extensions(gw):
    with gw.smtp() as s:
        feats = s.esmtp_features
        for ext in ("pipelining", "8bitmime", "enhancedstatuscodes", "smtputf8", "starttls", "help"):
            assert ext in feats, f"EHLO does not advertise {ext.upper()}: {s.ehlo_resp!r}"
        assert feats.get("size", "").strip() == str(MAX), \
            f"SIZE should announce max_message_size {MAX}: {s.ehlo_resp!r}"
        assert s.ehlo_resp.decode().splitlines()[0].startswith("localhost"), s.ehlo_resp


def test_greeting_names_hostname(gw):
    r = RawSMTP(gw.smtp_port)
    code, text = r.reply()
    r.close()
    assert code == 220 and text.startswith("localhost"), f"greeting: {code} {text}"


def test_help_command(gw):
    with gw.raw_smtp() as r:
        r.expect("EHLO client.test", 250)
        code, text = r.cmd("HELP")
        assert code == 214, f"HELP: {code} {text}"


def test_helo_without_extensions(gw):
    mid = new_msgid()
    with gw.raw_smtp() as r:
        r.expect("HELO client.test", 250)
        r.expect("MAIL FROM:<alice@client.test>", 250)
        r.expect("RCPT TO:<support@example.test>", 250)
        r.expect("DATA", 354)
        r.send(dot_stuff(make_msg("helo", msgid=mid)))
        reply = parse_data_reply(*r.reply())
    m, _ = gw.stored(reply)
    assert m["message_id"] == mid


def test_command_sequence_errors(gw):
    with gw.raw_smtp() as r:
        r.expect("EHLO client.test", 250)
        code, text = r.cmd("RCPT TO:<support@example.test>")
        assert code == 503, f"RCPT before MAIL: {code} {text}"
        r.expect("MAIL FROM:<alice@client.test>", 250)
        code, text = r.cmd("DATA")
        assert code in (503, 554), f"DATA without RCPT: {code} {text}"
        r.expect("RSET", 250)
        r.expect("QUIT", 221)


def test_pipelined_transaction(gw):
    mid = new_msgid()
    msg = make_msg("pipelined", msgid=mid)
    with gw.raw_smtp() as r:
        r.expect("EHLO client.test", 250)
        r.send(b"MAIL FROM:<alice@client.test>\r\nRCPT TO:<support@example.test>\r\nDATA\r\n")
        assert r.reply()[0] == 250
        assert r.reply()[0] == 250
        assert r.reply()[0] == 354
        r.send(dot_stuff(msg) + b"QUIT\r\n")
        code, text = r.reply()
        reply = parse_data_reply(code, text)
        assert r.reply()[0] == 221
    m, _ = gw.stored(reply)
    assert m["message_id"] == mid


# ------------------------------------------------------------------- TLS ---

def test_starttls_smtplib_verified_localhost(gw):
    mid = new_msgid()
    with smtplib.SMTP("localhost", gw.smtp_port, local_hostname="client.test", timeout=60) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        code, _ = s.starttls(context=gw.tls_context())  # verifies the chain and "localhost"
        assert code == 220
        s.ehlo()
        assert not s.has_extn("starttls"), "STARTTLS must not be offered again after TLS"
        assert s.has_extn("size")
        reply = gw.send(make_msg("over starttls", msgid=mid), smtp=s)
    m, t = gw.stored(reply)
    assert m["message_id"] == mid and t["mailbox"] == "support"


def test_starttls_smtplib_verified_ip(gw):
    """The dev certificate also covers 127.0.0.1."""
    with smtplib.SMTP("127.0.0.1", gw.smtp_port, local_hostname="client.test", timeout=60) as s:
        s.ehlo()
        code, _ = s.starttls(context=gw.tls_context())
        assert code == 220
        assert s.noop()[0] == 250


def test_starttls_unknown_ca_is_refused_by_client(gw):
    """Verification is real: without the dev cert as CA, the handshake fails."""
    with smtplib.SMTP("localhost", gw.smtp_port, local_hostname="client.test", timeout=60) as s:
        s.ehlo()
        with pytest.raises(ssl.SSLCertVerificationError):
            s.starttls(context=ssl.create_default_context())


def test_no_starttls_twice(gw):
    with gw.raw_smtp() as r:
        r.expect("EHLO client.test", 250)
        r.expect("STARTTLS", 220)
        r.starttls(gw.tls_context())
        text = r.expect("EHLO client.test", 250)
        assert "STARTTLS" not in text.upper()
        code, text = r.cmd("STARTTLS")
        assert 500 <= code < 600, f"STARTTLS inside TLS: {code} {text}"


def test_implicit_tls_smtplib(gw):
    mid = new_msgid()
    with smtplib.SMTP_SSL("localhost", gw.tls_port, local_hostname="client.test", timeout=60,
                          context=gw.tls_context()) as s:
        s.ehlo()
        assert not s.has_extn("starttls"), "no STARTTLS on the implicit-TLS listener"
        for ext in ("pipelining", "8bitmime", "enhancedstatuscodes", "smtputf8", "size"):
            assert s.has_extn(ext), ext
        reply = gw.send(make_msg("implicit tls", msgid=mid), smtp=s)
    m, _ = gw.stored(reply)
    assert m["message_id"] == mid


def _swaks(gw, *extra, port=None):
    swaks = shutil.which("swaks")
    assert swaks, "swaks is not installed (scripts/install-test-deps.sh installs it)"
    mid = new_msgid()
    cmd = [swaks, "--server", "127.0.0.1", "--port", str(port or gw.smtp_port),
           "--tls-verify", "--tls-ca-path", str(gw.cert_path), "--tls-sni", "localhost",
           "--ehlo", "client.test",
           "--from", "swaks@client.test", "--to", "support@example.test",
           "--header", f"Subject: swaks {mid}", "--header", f"Message-Id: <{mid}>",
           "--body", "sent by swaks", "--timeout", "60", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    return mid, p


def _swaks_reply(out: str):
    """The final 250 line swaks printed for DATA."""
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("<~ 250 2.0.0 Ok:") or line.startswith("<~  250 2.0.0 Ok:") \
                or line.startswith("<- 250 2.0.0 Ok:"):
            code, text = line.split(None, 2)[1:]
            return parse_data_reply(int(code), text)
    raise AssertionError(f"no 250 Ok reply to DATA in swaks output:\n{out}")


def test_swaks_starttls_verified(gw):
    mid, p = _swaks(gw, "--tls")
    assert p.returncode == 0, f"swaks failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    assert "STARTTLS" in p.stdout
    m, _ = gw.stored(_swaks_reply(p.stdout))
    assert m["message_id"] == mid
    assert "sent by swaks" in m["text"]


def test_swaks_implicit_tls_verified(gw):
    mid, p = _swaks(gw, "--tls-on-connect", port=gw.tls_port)
    assert p.returncode == 0, f"swaks failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    m, _ = gw.stored(_swaks_reply(p.stdout))
    assert m["message_id"] == mid


def test_starttls_plaintext_injection_discarded(gw):
    """Commands pipelined in plaintext after STARTTLS must be thrown away
    (CVE-2011-0411 class), not executed inside the TLS session."""
    sender = f"{unique('tls')}@client.test"
    with gw.raw_smtp() as r:
        r.expect("EHLO client.test", 250)
        r.send(b"STARTTLS\r\nMAIL FROM:<inject@evil.test>\r\nRCPT TO:<support@example.test>\r\n")
        code, text = r.reply()
        assert code == 220, f"STARTTLS: {code} {text}"
        # A server that answered the injected commands in plaintext breaks the handshake.
        r.starttls(gw.tls_context())
        text = r.expect("EHLO client.test", 250)
        assert text.startswith("localhost"), f"first reply inside TLS is not the EHLO reply: {text}"
        # Had the injected MAIL been executed, this would be "503 nested MAIL".
        r.expect(f"MAIL FROM:<{sender}>", 250)
        r.expect("RCPT TO:<support@example.test>", 250)
        r.expect("DATA", 354)
        # No From header: recorded as a rejection, whose envelope shows the MAIL FROM used.
        r.send(dot_stuff(make_msg("injection check", from_=None)))
        reply = parse_data_reply(*r.reply())
    o = reply.rejection()
    rej = gw.rejection(o.id)
    assert rej["envelope"]["mail_from"] == sender
    assert rej["envelope"]["rcpt_to"] == ["support@example.test"]


# --------------------------------------------------------------- routing ---

@pytest.mark.parametrize("rcpt", ["someone@other.test", "support@sub.example.test", "support@example.test.evil"])
def test_relay_denied(gw, rcpt):
    with gw.smtp() as s:
        assert s.mail("alice@client.test")[0] == 250
        code, text = s.rcpt(rcpt)
        assert code == 550 and text.startswith(b"5.7.1"), f"RCPT TO:<{rcpt}>: {code} {text!r}"


def test_unknown_user_goes_to_default_mailbox(gw):
    mid = new_msgid()
    reply = gw.send(make_msg("to an unknown user", to="nobody@example.test", msgid=mid),
                    rcpts=[f"{unique('nobody')}@example.test"])
    m, t = gw.stored(reply)
    assert t["mailbox"] == "support" and t["queue"] == "Support"


def test_unknown_user_without_default_is_refused(make_gateway):
    g = make_gateway({"mailbox": [
        {"name": "support", "addresses": ["support@example.test"], "queue": "Support", "default": False},
        {"name": "sales", "addresses": ["sales@example.test"], "queue": "Sales", "default": False},
    ]})
    with g.smtp() as s:
        assert s.mail("alice@client.test")[0] == 250
        code, text = s.rcpt("nobody@example.test")
        assert code == 550 and text.startswith(b"5.1.1"), f"{code} {text!r}"
        code, text = s.rcpt("sales@example.test")
        assert code == 250, f"{code} {text!r}"


def test_recipient_domain_case_insensitive(gw):
    mid = new_msgid()
    reply = gw.send(make_msg("case", to="sales@EXAMPLE.TEST", msgid=mid), rcpts=["sales@EXAMPLE.Test"])
    _, t = gw.stored(reply)
    assert t["mailbox"] == "sales"


def test_one_message_to_two_mailboxes(gw):
    mid = new_msgid()
    reply = gw.send(make_msg("for both", to="support@example.test, sales@example.test", msgid=mid),
                    rcpts=["support@example.test", "sales@example.test"])
    assert reply.code == 250 and len(reply.outcomes) == 2, f"expected two parts joined by '; ': {reply}"
    assert all(o.kind == "message" for o in reply.outcomes), str(reply)
    boxes = set()
    for o in reply.outcomes:
        m = gw.message(o.id)
        t = gw.ticket(m["ticket_id"])
        assert t["number"] == o.ticket
        assert m["message_id"] == mid
        boxes.add(t["mailbox"])
    assert boxes == {"support", "sales"}


def test_smtputf8_and_8bit(gw):
    mid = new_msgid()
    msg = make_msg("Grüße aus Köln — ✓", from_="Jürgen Müller <jürgen@client.test>", msgid=mid,
                   body="Schöne Grüße\r\n", headers=[("Content-Transfer-Encoding", "8bit")])
    reply = gw.send(msg, mail_from="jürgen@client.test", mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    m, t = gw.stored(reply)
    assert t["subject"] == "Grüße aus Köln — ✓"
    assert t["requester"]["address"] == "jürgen@client.test"
    assert t["requester"]["name"] == "Jürgen Müller"
    assert "Schöne Grüße" in m["text"]


# ------------------------------------------------------------------ size ---

def test_mail_from_size_over_limit(gw):
    with gw.smtp() as s:
        code, text = s.mail("alice@client.test", [f"SIZE={MAX + 1}"])
        assert code == 552 and text.startswith(b"5.3.4"), f"{code} {text!r}"
        code, text = s.mail("alice@client.test", [f"SIZE={MAX // 2}"])
        assert code == 250, f"SIZE under the limit: {code} {text!r}"


def test_streamed_oversize_is_drained_then_552_and_recorded(gw):
    sender = f"{unique('big')}@client.test"
    line = b"x" * 76 + b"\r\n"
    body = line * (MAX // len(line) + 2000)  # comfortably over the limit
    msg = make_msg("too big", msgid=new_msgid(), body=body)
    with gw.smtp() as s:
        assert s.mail(sender)[0] == 250
        assert s.rcpt("support@example.test")[0] == 250
        code, text = s.data(msg)
        assert code == 552 and text.startswith(b"5.3.4"), f"DATA over the limit: {code} {text!r}"
        # drained, not cut off: the session goes on
        assert s.noop()[0] == 250
        reply = gw.send(make_msg("small after big"), smtp=s)
        reply.message()
    recs = [r for r in gw.rejections(reason="oversize") if r["envelope"]["mail_from"] == sender]
    assert len(recs) == 1, f"expected one oversize rejection for {sender}, got {recs}"
    rec = recs[0]
    assert rec["reason"] == "oversize"
    assert rec["raw_available"] is False
    assert rec["envelope"]["rcpt_to"] == ["support@example.test"]
    assert gw.raw("rejections", rec["id"]).status == 404
    assert gw.rejection(rec["id"])["id"] == rec["id"]


# ------------------------------------------------------------- smuggling ---

SMUGGLING = {
    "LF.LF": b"\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CR": b"\r.\r",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.LF": b"\r\n.\n",
    "LF.CR": b"\n.\r",
    "CRLF.CR": b"\r\n.\r",
}


@pytest.mark.parametrize("seq", list(SMUGGLING.values()), ids=list(SMUGGLING.keys()))
def test_smuggling_sequence_does_not_end_data(gw, seq):
    mid = new_msgid()
    head = make_msg("smuggling test", msgid=mid, body=b"")
    payload = (head + b"first line\r\nlast line before" + seq
               + b"MAIL FROM:<evil@x>\r\nRCPT TO:<support@example.test>\r\nDATA\r\n"
               + b"From: evil@x\r\nTo: support@example.test\r\nSubject: smuggled\r\n\r\n"
               + b"smuggled body\r\n")
    before = gw.store_counts()
    with gw.raw_smtp() as r:
        r.expect("EHLO client.test", 250)
        raw_transaction(r, "alice@client.test")
        r.send(payload + b".\r\n")
        reply = parse_data_reply(*r.reply())
        r.send(b"QUIT\r\n")
        rest = r.replies_until_close()
    assert [c for c, _ in rest] == [221], (
        f"after the real end of data only QUIT's 221 may follow; got {rest} "
        f"(the smuggled commands were executed)")
    m, _ = gw.stored(reply)
    assert m["message_id"] == mid
    assert "MAIL FROM:<evil@x>" in m["text"], f"smuggled lines must stay message content: {m['text']!r}"
    assert "smuggled body" in m["text"]
    assert gw.store_counts() == (before[0] + 1, before[1]), "exactly one message must be stored"


def test_bare_lf_normalized_in_commands_and_data(gw):
    mid = new_msgid()
    msg = make_msg("bare lf", msgid=mid, body="line one\r\nline two\r\n").replace(b"\r\n", b"\n")
    with gw.raw_smtp() as r:
        r.send(b"EHLO client.test\n")
        assert r.reply()[0] == 250
        r.send(b"MAIL FROM:<alice@client.test>\n")
        assert r.reply()[0] == 250
        r.send(b"RCPT TO:<support@example.test>\n")
        assert r.reply()[0] == 250
        r.send(b"DATA\n")
        assert r.reply()[0] == 354
        r.send(msg + b"\r\n.\r\n")
        reply = parse_data_reply(*r.reply())
    m, _ = gw.stored(reply)
    assert m["message_id"] == mid
    assert "line one" in m["text"] and "line two" in m["text"]


@pytest.fixture
def reject_gw(make_gateway):
    return make_gateway({"smtp": {"bare_lf": "reject"}})


def test_bare_lf_reject_command(reject_gw):
    with reject_gw.raw_smtp() as r:
        r.send(b"EHLO client.test\n")
        code, text = r.reply()
        assert code == 521 and text.startswith("5.5.2"), f"{code} {text}"
        assert r.closed_by_server(), "the connection must be closed after 521"


@pytest.mark.parametrize("content", [
    b"Subject: bare\r\n\r\nline one\nline two\r\n",
    b"Subject: bare\r\n\r\nline one\r\n.\nMAIL FROM:<evil@x>\r\n",
    b"Subject: bare\r\n\r\nline one\n.\nMAIL FROM:<evil@x>\r\n",
], ids=["bare-LF-line", "CRLF.LF", "LF.LF"])
def test_bare_lf_reject_data(reject_gw, content):
    with reject_gw.raw_smtp() as r:
        r.expect("EHLO client.test", 250)
        raw_transaction(r, "alice@client.test")
        r.send(b"From: alice@client.test\r\n" + content + b".\r\n")
        code, text = r.reply()
        assert code == 521 and text.startswith("5.5.2"), f"{code} {text}"
        assert r.closed_by_server(), "the connection must be closed after 521"
    assert reject_gw.store_counts() == (0, 0), "nothing may be stored from a 521 session"


def test_crlf_only_message_accepted_in_reject_mode(reject_gw):
    mid = new_msgid()
    reply = reject_gw.send(make_msg("clean crlf", msgid=mid))
    m, _ = reject_gw.stored(reply)
    assert m["message_id"] == mid


# ------------------------------------------------------------ timeouts ---

def test_idle_timeout(make_gateway):
    g = make_gateway({"smtp": {"idle_timeout": "2s"}})
    with g.raw_smtp(timeout=120) as r:
        r.expect("EHLO client.test", 250)
        code, text = r.reply()  # send nothing and wait for the server
        assert code == 421 and text.startswith("4.4.2"), f"{code} {text}"
        assert r.closed_by_server()


def test_a_client_that_never_reads_its_replies_is_closed(make_gateway):
    """The idle time bounds writes too: a client that pipelines commands and
    never reads a reply would otherwise hold its connection for ever once
    the socket buffers are full."""
    import socket
    import threading
    import time

    g = make_gateway({"smtp": {"idle_timeout": "2s", "max_commands": 1000000}})
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", g.smtp_port))
    s.settimeout(5)
    chunk = b"EHLO client.test\r\n" * 2000
    ended = threading.Event()

    def keep_sending():
        # Until the server stops reading (sendall times out) or closes.
        try:
            while not ended.is_set():
                s.sendall(chunk)
        except OSError:
            pass

    t = threading.Thread(target=keep_sending, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 60
        seen_open = False
        while True:
            active = g.metrics().get("mailgate_smtp_sessions_active")
            seen_open = seen_open or active == 1
            if seen_open and active == 0:
                break
            assert time.monotonic() < deadline, (
                f"the session is still open ({active}) with nobody reading its replies:\n{g.log_tail()}")
            time.sleep(0.2)
        closed, _ = g.wait_log("took none of our replies")
        assert closed, g.log_tail()
    finally:
        ended.set()
        s.close()
        t.join(10)


def _dribble_data(g, seconds: float, step: float = 1.0):
    """Opens a transaction, then sends message content a few bytes at a time
    (each gap shorter than the idle time) for up to `seconds`. Returns the
    first reply the server sent meanwhile (None if it sent none) and the raw
    connection."""
    import select
    import time

    r = g.raw_smtp(timeout=30)
    r.expect("EHLO client.test", 250)
    r.expect("MAIL FROM:<slow@client.test>", 250)
    r.expect("RCPT TO:<support@example.test>", 250)
    r.expect("DATA", 354)
    r.send(b"Subject: slow\r\n\r\n")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ready, _, _ = select.select([r.sock], [], [], step)
        if ready:
            return r.reply(), r
        r.send(b"0123456789\r\n")
    return None, r


def test_a_request_slower_than_min_data_rate_is_closed(make_gateway):
    """Each read comes well inside the idle time, but the message as a whole
    falls behind smtp.min_data_rate (500 B/s by default) once it has taken
    longer than the idle time: 421 4.4.2 and closed, not held for ever."""
    g = make_gateway({"smtp": {"idle_timeout": "2s"}})
    reply, r = _dribble_data(g, seconds=30, step=0.5)
    with r:
        assert reply is not None, "the server let a 24 B/s message go on for 30 s"
        code, text = reply
        assert code == 421 and text.startswith("4.4.2") and "too slow" in text, f"{code} {text}"
        assert r.closed_by_server()
    slow, _ = g.wait_log("request slower than the minimum data rate")
    assert slow
    assert g.store_counts() == (0, 0)


def test_min_data_rate_zero_bounds_only_each_read(make_gateway):
    g = make_gateway({"smtp": {"idle_timeout": "2s", "min_data_rate": 0}})
    reply, r = _dribble_data(g, seconds=6, step=0.5)
    with r:
        assert reply is None, f"closed although min_data_rate = 0: {reply}"
        r.send(b".\r\n")
        code, text = r.reply()
        assert code == 250, f"{code} {text}"
