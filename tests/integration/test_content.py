"""What is stored: ticket and message fields, MIME parts, HTML, raw bytes."""

import base64
import datetime
import os
import re
import uuid

from mailmsg import addr_of, dot_stuff, make_msg, multipart_with_attachment, new_msgid, unique
from harness import parse_data_reply
from test_classify import rfc3339


def test_ticket_and_message_fields(gw):
    mid = new_msgid()
    subject = f"Fields check {unique()}"
    msg = make_msg(subject, msgid=mid, date=False,
                   from_="Alice Example <alice@client.test>",
                   to="Support Team <support@example.test>",
                   cc="Carol <carol@client.test>, dave@client.test",
                   headers=[("Date", "Tue, 01 Oct 2024 10:00:00 +0200")],
                   body="The printer is on fire.\r\nPlease advise.\r\n")
    reply = gw.send(msg)
    m, t = gw.stored(reply)

    assert isinstance(t["id"], int) and isinstance(t["number"], int)
    assert t["tag"] == f"[MG#{t['number']}]"
    assert t["mailbox"] == "support" and t["queue"] == "Support"
    assert t["status"] == "open"
    assert t["subject"] == subject
    assert t["requester"] == {"address": "alice@client.test", "name": "Alice Example"}
    created = rfc3339(t["created_at"])
    assert created.tzinfo is not None
    rfc3339(t["updated_at"])
    assert t["message_count"] == 1
    assert len(t["messages"]) == 1

    assert str(m["id"]) == reply.message().id
    assert m["ticket_id"] == t["id"]
    assert m["direction"] == "inbound"
    assert m["message_id"] == mid
    assert m["in_reply_to"] == [] and m["references"] == []
    assert m["from"]["address"] == "alice@client.test" and m["from"]["name"] == "Alice Example"
    assert [addr_of(a) for a in m["to"]] == ["support@example.test"]
    assert [addr_of(a) for a in m["cc"]] == ["carol@client.test", "dave@client.test"]
    assert rfc3339(m["date"]) == datetime.datetime(2024, 10, 1, 8, 0, tzinfo=datetime.timezone.utc)
    assert m["subject"] == subject
    assert "The printer is on fire." in m["text"] and "Please advise." in m["text"]
    assert m["html"] is None
    assert m["attachments"] == []
    assert m["auto_submitted"] is False
    assert m["source"] == "smtp"
    rfc3339(m["received_at"])
    assert m["size"] == len(msg)

    # the ticket as listed matches the ticket as fetched
    listed = [x for x in gw.tickets(mailbox="support") if x["id"] == t["id"]]
    assert len(listed) == 1
    for k in ("number", "tag", "mailbox", "queue", "status", "subject", "requester", "message_count"):
        assert listed[0][k] == t[k], k
    assert "messages" not in listed[0] or listed[0]["messages"] == t["messages"]


def test_message_endpoint_equals_ticket_message(gw):
    reply = gw.send(make_msg(f"same {unique()}"))
    m, t = gw.stored(reply)
    assert t["messages"][0] == m


def test_attachments_listed(gw):
    pdf = b"%PDF-1.4\n" + os.urandom(3000)
    mid = new_msgid()
    msg = multipart_with_attachment(f"with attachment {unique()}", mid, "See the attached report.",
                                    "report.pdf", "application/pdf", pdf)
    m, t = gw.stored(gw.send(msg))
    assert "See the attached report." in m["text"]
    assert len(m["attachments"]) == 1, m["attachments"]
    a = m["attachments"][0]
    assert a["name"] == "report.pdf"
    assert a["content_type"].split(";")[0].strip() == "application/pdf"
    assert a["size"] == len(pdf), "attachment size is the decoded size"
    assert isinstance(a["index"], int)


def test_two_attachments(gw):
    boundary = "=_b_" + uuid.uuid4().hex
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(500)
    csv = b"a,b\r\n1,2\r\n"
    body = (
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nTwo files.\r\n"
        f"--{boundary}\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=\"shot.png\"\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{base64.encodebytes(png).decode()}"
        f"--{boundary}\r\nContent-Type: text/csv; name=\"data.csv\"\r\nContent-Disposition: attachment; filename=\"data.csv\"\r\n"
        f"\r\n{csv.decode()}"
        f"--{boundary}--\r\n"
    ).replace("\r\n", "\n").replace("\n", "\r\n")
    m, _ = gw.stored(gw.send(make_msg(f"two files {unique()}", body=body,
                                      content_type=f'multipart/mixed; boundary="{boundary}"')))
    atts = sorted(m["attachments"], key=lambda a: a["name"])
    assert [a["name"] for a in atts] == ["data.csv", "shot.png"], m["attachments"]
    assert atts[1]["size"] == len(png)
    assert atts[1]["content_type"].startswith("image/png")
    assert len({a["index"] for a in atts}) == 2
    assert "Two files." in m["text"]


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.replace("\u00a0", " ")).strip()


def test_html_only_message_gets_text(gw):
    html = ("<html><head><title>t</title><style>p {color: red}</style></head><body>"
            "<p>Hello <b>HTML</b> world</p><p>Fish &amp; chips</p></body></html>")
    m, t = gw.stored(gw.send(make_msg(f"html only {unique()}", body=html,
                                      content_type="text/html; charset=utf-8")))
    assert m["html"] is not None and "<b>HTML</b>" in m["html"]
    text = _norm(m["text"])
    assert "Hello HTML world" in text, f"text derived from HTML: {m['text']!r}"
    assert "Fish & chips" in text, f"entities decoded: {m['text']!r}"
    assert "<p>" not in m["text"] and "<b>" not in m["text"], f"tags stripped: {m['text']!r}"
    assert "color: red" not in m["text"], f"style content is not text: {m['text']!r}"


def test_multipart_alternative(gw):
    boundary = "=_alt_" + uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain version\r\n"
            f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p><i>html version</i></p>\r\n"
            f"--{boundary}--\r\n")
    m, _ = gw.stored(gw.send(make_msg(f"alternative {unique()}", body=body,
                                      content_type=f'multipart/alternative; boundary="{boundary}"')))
    assert "plain version" in m["text"]
    assert "<i>html version</i>" in (m["html"] or "")
    assert m["attachments"] == []


def test_encoded_words_decoded(gw):
    subj = "=?UTF-8?B?" + base64.b64encode("Ünïcödé ✓".encode()).decode() + "?= =?ISO-8859-1?Q?Caf=E9?="
    m, t = gw.stored(gw.send(make_msg(subj, from_="=?UTF-8?Q?Ren=C3=A9e?= <renee@client.test>")))
    assert t["subject"] == "Ünïcödé ✓Café"
    assert m["from"]["name"] == "Renée"
    assert t["requester"]["name"] == "Renée"


def test_quoted_printable_and_latin1_body(gw):
    body = "Gr=FC=DFe aus K=F6ln=\r\n, soft break.\r\n"
    m, _ = gw.stored(gw.send(make_msg(f"qp {unique()}", body=body,
                                      content_type="text/plain; charset=iso-8859-1",
                                      headers=[("Content-Transfer-Encoding", "quoted-printable")])))
    assert "Grüße aus Köln, soft break." in m["text"], repr(m["text"])


TRICKY = (
    b"From: Alice <alice@client.test>\r\n"
    b"To: support@example.test\r\n"
    b"Subject: raw check\r\n"
    b"X-Folded: first part\r\n\tsecond part\r\n"
    b"Message-ID: <{mid}>\r\n"
    b"\r\n"
    b".leading dot\r\n"
    b"..two dots\r\n"
    b".\r\n"
    b"trailing spaces   \r\n"
    b"tab\there\r\n"
    b"8-bit: \xe9\xe8\xff\r\n"
    b"\r\n"
    b"\r\n"
    + b"L" * 990 + b"\r\n"
    b"last line\r\n"
)


def test_raw_is_byte_exact_smtplib(gw):
    mid = new_msgid()
    msg = TRICKY.replace(b"{mid}", mid.encode())
    reply = gw.send(msg, mail_options=["BODY=8BITMIME"])
    o = reply.message()
    r = gw.raw("messages", o.id)
    assert r.status == 200
    assert r.headers.get("Content-Type", "").startswith("message/rfc822"), r.headers.get("Content-Type")
    assert r.body == msg, "raw must be exactly what the client sent, after dot-unstuffing"


def test_raw_is_byte_exact_raw_socket(gw):
    mid = new_msgid()
    msg = TRICKY.replace(b"{mid}", mid.encode())
    with gw.raw_smtp() as r:
        r.expect("EHLO client.test", 250)
        r.expect("MAIL FROM:<alice@client.test> BODY=8BITMIME", 250)
        r.expect("RCPT TO:<support@example.test>", 250)
        r.expect("DATA", 354)
        r.send(dot_stuff(msg))
        reply = parse_data_reply(*r.reply())
    raw = gw.raw("messages", reply.message().id)
    assert raw.body == msg


def test_raw_404_for_unknown(gw):
    r = gw.raw("messages", 987654321)
    assert r.status == 404
    assert r.json()["error"] == "not_found"
