"""Classification: every rejection reason is accepted with 250, recorded with
its reason and the raw message, and visible in the API. Auto-replies and
bounces that thread onto a known ticket are added to it instead."""

import datetime

import pytest

from harness import parse_data_reply
from mailmsg import dsn_report, make_msg, new_msgid, unique


def rfc3339(s: str) -> datetime.datetime:
    assert isinstance(s, str) and "T" in s, f"not RFC 3339: {s!r}"
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def _plain(subject, mid, **kw):
    return make_msg(subject, msgid=mid, **kw)


# (case id, expected reason, builder(subject, mid) -> bytes, MAIL FROM)
CASES = [
    ("no-from-header", "no_sender", lambda s, m: _plain(s, m, from_=None), "alice@client.test"),
    ("from-without-address", "no_sender",
     lambda s, m: _plain(s, m, from_="undisclosed-recipients:;"), "alice@client.test"),
    ("no-header-at-all", "unparseable",
     lambda s, m: b"\r\nThis text has no header at all.\r\n", "alice@client.test"),
    ("auto-submitted-auto-replied", "auto_submitted",
     lambda s, m: _plain(s, m, headers=[("Auto-Submitted", "auto-replied")]), "alice@client.test"),
    ("auto-submitted-auto-generated", "auto_submitted",
     lambda s, m: _plain(s, m, headers=[("Auto-Submitted", "auto-generated")]), "alice@client.test"),
    ("precedence-bulk", "bulk",
     lambda s, m: _plain(s, m, headers=[("Precedence", "bulk")]), "alice@client.test"),
    ("precedence-junk", "bulk",
     lambda s, m: _plain(s, m, headers=[("Precedence", "junk")]), "alice@client.test"),
    ("precedence-list", "bulk",
     lambda s, m: _plain(s, m, headers=[("Precedence", "list")]), "alice@client.test"),
    ("x-autoreply", "auto_reply",
     lambda s, m: _plain(s, m, headers=[("X-Autoreply", "yes")]), "alice@client.test"),
    ("x-autorespond", "auto_reply",
     lambda s, m: _plain(s, m, headers=[("X-Autorespond", "Out of office")]), "alice@client.test"),
    ("x-auto-response-suppress", "auto_reply",
     lambda s, m: _plain(s, m, headers=[("X-Auto-Response-Suppress", "All")]), "alice@client.test"),
    ("null-return-path", "bounce", lambda s, m: _plain(s, m), ""),
    ("multipart-report-dsn", "bounce",
     lambda s, m: dsn_report(s, m, from_="Reports <reports@client.test>"), "reports@client.test"),
    ("from-mailer-daemon", "bounce",
     lambda s, m: _plain(s, m, from_="Mail Delivery Subsystem <MAILER-DAEMON@mx.client.test>"),
     "alice@client.test"),
    ("from-postmaster", "bounce",
     lambda s, m: _plain(s, m, from_="postmaster@mx.client.test"), "alice@client.test"),
    ("from-own-mailbox", "loop",
     lambda s, m: _plain(s, m, from_="Support <support@example.test>"), "alice@client.test"),
    ("from-other-own-mailbox", "loop",
     lambda s, m: _plain(s, m, from_="sales@example.test"), "alice@client.test"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_rejection_reason(gw, case):
    name, reason, build, mail_from = case
    mid = new_msgid()
    subject = f"{name} {unique()}"
    msg = build(subject, mid)
    reply = gw.send(msg, mail_from=mail_from)
    o = reply.rejection()
    assert o.reason == reason, f"{name}: expected reason {reason}, reply was: {reply}"

    rec = gw.rejection(o.id)
    assert str(rec["id"]) == o.id
    assert rec["reason"] == reason
    assert isinstance(rec["detail"], str)
    assert rec["source"] == "smtp"
    assert rec["mailbox"] == "support"
    env = rec["envelope"]
    assert env["mail_from"] in ((mail_from,) if mail_from else ("", "<>")), env
    assert env["rcpt_to"] == ["support@example.test"], env
    assert env["helo"] == "client.test", env
    assert "127.0.0.1" in env["client"], env
    assert rec["size"] == len(msg), f"size {rec['size']} != {len(msg)} bytes sent"
    rfc3339(rec["received_at"])
    if name != "no-header-at-all":
        assert rec["message_id"] == mid
        assert rec["subject"] == subject
    assert rec["raw_available"] is True
    raw = gw.raw("rejections", o.id)
    assert raw.status == 200
    assert raw.headers.get("Content-Type", "").startswith("message/rfc822")
    assert raw.body == msg, "the raw of a rejection must be the bytes sent (after dot-unstuffing)"

    listed = gw.rejections(reason=reason)
    assert any(str(r["id"]) == o.id for r in listed), f"rejection {o.id} not listed under reason={reason}"
    assert all(r["reason"] == reason for r in listed), "the reason filter returned other reasons"


def test_empty_message_is_unparseable(gw):
    """DATA with nothing before the terminator."""
    sender = f"{unique('empty')}@client.test"
    with gw.raw_smtp() as r:
        r.expect("EHLO client.test", 250)
        r.expect(f"MAIL FROM:<{sender}>", 250)
        r.expect("RCPT TO:<support@example.test>", 250)
        r.expect("DATA", 354)
        r.send(b".\r\n")
        reply = parse_data_reply(*r.reply())
    o = reply.rejection()
    assert o.reason == "unparseable", str(reply)
    rec = gw.rejection(o.id)
    assert rec["envelope"]["mail_from"] == sender
    assert rec["size"] == 0


@pytest.mark.parametrize("header", [("Auto-Submitted", "no"), ("Precedence", "first-class")],
                         ids=["auto-submitted-no", "precedence-first-class"])
def test_not_rejected(gw, header):
    mid = new_msgid()
    reply = gw.send(make_msg(f"human {unique()}", msgid=mid, headers=[header]))
    m, _ = gw.stored(reply)
    assert m["message_id"] == mid
    assert m["auto_submitted"] is False


# ------------------------------------------- auto-replies that thread ---

def _open_ticket(gw):
    mid = new_msgid()
    subject = f"printer on fire {unique()}"
    reply = gw.send(make_msg(subject, msgid=mid))
    m, t = gw.stored(reply)
    assert m["auto_submitted"] is False
    return mid, subject, t


def test_auto_reply_in_reply_to_threads(gw):
    mid, subject, t = _open_ticket(gw)
    ar = make_msg(f"Automatic reply: {subject}", msgid=new_msgid(), in_reply_to=mid,
                  headers=[("Auto-Submitted", "auto-replied")])
    reply = gw.send(ar)
    m, t2 = gw.stored(reply)
    assert t2["id"] == t["id"], "an auto-reply to a known message belongs on that ticket"
    assert m["auto_submitted"] is True
    assert t2["message_count"] == 2


def test_out_of_office_with_tag_threads(gw):
    _, subject, t = _open_ticket(gw)
    ar = make_msg(f"Out of office: Re: {t['tag']} {subject}", msgid=new_msgid(),
                  headers=[("X-Autoreply", "yes"), ("Precedence", "bulk")])
    reply = gw.send(ar)
    m, t2 = gw.stored(reply)
    assert t2["id"] == t["id"]
    assert m["auto_submitted"] is True


def test_bounce_with_references_threads(gw):
    mid, subject, t = _open_ticket(gw)
    bounce = dsn_report("Undelivered Mail Returned to Sender", new_msgid(), original_msgid=mid)
    # add References to the original
    bounce = bounce.replace(b"MIME-Version: 1.0\r\n", f"References: <{mid}>\r\nMIME-Version: 1.0\r\n".encode(), 1)
    reply = gw.send(bounce, mail_from="")
    m, t2 = gw.stored(reply)
    assert t2["id"] == t["id"]
    assert m["auto_submitted"] is True


def test_loop_is_rejected_even_when_it_threads(gw):
    """Mail From our own mailbox address is a loop, also when it references a ticket:
    only auto-replies and bounces are let onto a known ticket (the spec's exception).
    Adding our own notifications back to the ticket is how a mail loop starts."""
    mid, subject, t = _open_ticket(gw)
    echo = make_msg(f"Re: {t['tag']} {subject}", from_="Support <support@example.test>",
                    msgid=new_msgid(), in_reply_to=mid, references=[mid])
    reply = gw.send(echo)
    o = reply.rejection()
    assert o.reason == "loop", str(reply)
    assert gw.ticket(t["id"])["message_count"] == 1


def test_auto_reply_to_unknown_message_is_rejected(gw):
    ar = make_msg("Automatic reply: something", msgid=new_msgid(), in_reply_to=new_msgid(),
                  headers=[("Auto-Submitted", "auto-replied")])
    o = gw.send(ar).rejection()
    assert o.reason == "auto_submitted"


# ---------------------------------------------------------------- logs ---

def _fields(line: str) -> dict:
    out = {}
    for tok in line.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            out[k] = v.strip('"')
    return out


def test_log_lines(gw):
    """One line per message on stderr: 'message accepted message=ID ticket=N mailbox=NAME
    source=smtp' and 'message rejected rejection=ID reason=REASON'."""
    mid = new_msgid()
    acc = gw.send(make_msg(f"log accepted {unique()}", msgid=mid)).message()
    rej = gw.send(make_msg(f"log rejected {unique()}", headers=[("Precedence", "bulk")])).rejection()
    lines, text = gw.wait_log(
        lambda ln: "message accepted" in ln and _fields(ln).get("message") == acc.id)
    assert lines, f"no 'message accepted message={acc.id}' line on stderr:\n{text[-3000:]}"
    f = _fields(lines[0])
    assert f.get("ticket") == str(acc.ticket) and f.get("mailbox") == "support" \
        and f.get("source") == "smtp", lines[0]
    lines, text = gw.wait_log(
        lambda ln: "message rejected" in ln and _fields(ln).get("rejection") == rej.id)
    assert lines, f"no 'message rejected rejection={rej.id}' line on stderr:\n{text[-3000:]}"
    assert _fields(lines[0]).get("reason") == "bulk", lines[0]
