"""Build RFC 5322 test messages as exact bytes (CRLF line endings)."""

from __future__ import annotations

import base64
import email.utils
import itertools
import uuid

_counter = itertools.count(1)


def new_msgid(domain: str = "client.test") -> str:
    """A fresh Message-ID value without angle brackets."""
    return f"{uuid.uuid4().hex}.{next(_counter)}@{domain}"


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def crlf(text: str | bytes) -> bytes:
    """Normalise any line ending to CRLF and make sure the text ends with one."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    text = text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not text.endswith(b"\r\n"):
        text += b"\r\n"
    return text


def make_msg(subject: str = "test message", *,
             from_: str | None = "Alice Example <alice@client.test>",
             to: str | None = "support@example.test",
             cc: str | None = None,
             msgid: str | None | bool = None,
             in_reply_to: str | None = None,
             references: list[str] | None = None,
             headers: list[tuple[str, str]] | tuple = (),
             body: str | bytes = "Hello,\r\nthis is a test.\r\n",
             content_type: str | None = None,
             date: bool = True) -> bytes:
    """A simple message. msgid: None = a fresh one, False = no Message-ID header,
    a string = that id (without <>)."""
    h: list[tuple[str, str]] = []
    if from_ is not None:
        h.append(("From", from_))
    if to is not None:
        h.append(("To", to))
    if cc is not None:
        h.append(("Cc", cc))
    if subject is not None:
        h.append(("Subject", subject))
    if date:
        h.append(("Date", email.utils.formatdate(localtime=False)))
    if msgid is None:
        msgid = new_msgid()
    if msgid:
        h.append(("Message-ID", f"<{msgid}>"))
    if in_reply_to:
        h.append(("In-Reply-To", f"<{in_reply_to}>"))
    if references:
        h.append(("References", " ".join(f"<{r}>" for r in references)))
    h.append(("MIME-Version", "1.0"))
    h.append(("Content-Type", content_type or "text/plain; charset=utf-8"))
    h.extend(headers)
    head = "".join(f"{k}: {v}\r\n" for k, v in h).encode("utf-8")
    if isinstance(body, str):
        body = body.encode("utf-8")
    return crlf(head + b"\r\n" + body)


def dot_stuff(msg: bytes) -> bytes:
    """What a client sends after DATA: dot-stuffed lines and the terminator."""
    lines = msg.split(b"\r\n")
    stuffed = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines)
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


def header_value(raw: bytes, name: str) -> str | None:
    import email
    import email.policy
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    v = msg.get(name)
    return None if v is None else str(v)


def multipart_with_attachment(subject: str, msgid: str, text: str, att_name: str,
                              att_type: str, att_bytes: bytes) -> bytes:
    boundary = "=_b_" + uuid.uuid4().hex
    b64 = base64.encodebytes(att_bytes).decode().replace("\n", "\r\n")
    body = (
        f"This is a multi-part message in MIME format.\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n"
        f"\r\n"
        f"{text}\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: {att_type}; name=\"{att_name}\"\r\n"
        f"Content-Disposition: attachment; filename=\"{att_name}\"\r\n"
        f"Content-Transfer-Encoding: base64\r\n"
        f"\r\n"
        f"{b64}"
        f"--{boundary}--\r\n"
    )
    return make_msg(subject, msgid=msgid, body=body,
                    content_type=f'multipart/mixed; boundary="{boundary}"')


def dsn_report(subject: str, msgid: str, original_msgid: str | None = None,
               from_: str = "Mail Delivery System <mailer-daemon@mx.client.test>") -> bytes:
    boundary = "=_dsn_" + uuid.uuid4().hex
    orig = (f"Message-ID: <{original_msgid}>\r\n" if original_msgid else "")
    body = (
        f"--{boundary}\r\n"
        f"Content-Type: text/plain\r\n\r\n"
        f"Your message could not be delivered.\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.client.test\r\n\r\n"
        f"Final-Recipient: rfc822; nobody@client.test\r\n"
        f"Action: failed\r\n"
        f"Status: 5.1.1\r\n\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: text/rfc822-headers\r\n\r\n"
        f"From: support@example.test\r\n"
        f"{orig}"
        f"Subject: original\r\n\r\n"
        f"--{boundary}--\r\n"
    )
    return make_msg(subject, from_=from_, msgid=msgid, body=body,
                    content_type=f'multipart/report; report-type=delivery-status; boundary="{boundary}"')


def addr_of(a) -> str:
    """Address string out of an API address (object {"address","name"} or plain string)."""
    if isinstance(a, dict):
        return a.get("address")
    return a


def strip_brackets(s: str | None) -> str | None:
    if s is None:
        return None
    s = s.strip()
    if s.startswith("<") and s.endswith(">"):
        s = s[1:-1]
    return s

