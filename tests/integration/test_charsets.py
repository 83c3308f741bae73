"""Multi-byte and legacy charsets over SMTP: RFC 2047 encoded words in
Subject and the From display name, text/plain and text/html parts with
charset=..., in quoted-printable, base64 and 8bit. Each sample is encoded
here with Python's codecs; what the API returns must be the original text,
which is also what Python's email package decodes from the same bytes."""

import base64
import email
import email.header
import email.policy
import quopri

import pytest

from mailmsg import new_msgid, unique

# (MIME charset label, Python codec, sample text)
SAMPLES = [
    ("ISO-2022-JP", "iso2022_jp", "プリンターが壊れました"),
    ("Shift_JIS", "shift_jis", "請求書の件について"),
    ("EUC-JP", "euc_jp", "会議の日程を変更します"),
    ("GB2312", "gb2312", "打印机坏了，请帮忙"),
    ("GBK", "gbk", "发票问题需要处理"),
    ("GB18030", "gb18030", "账户无法登录"),
    ("Big5", "big5", "印表機壞了，請幫忙"),
    ("EUC-KR", "euc_kr", "프린터가 고장났습니다"),
    ("KOI8-R", "koi8_r", "Принтер сломался"),
    ("windows-1251", "cp1251", "Счёт за услуги"),
    ("windows-1252", "cp1252", "Café crème – “déjà vu” €5"),
]

TRANSFERS = ["quoted-printable", "base64", "8bit"]


def b_word(label: str, data: bytes) -> str:
    return f"=?{label}?B?{base64.b64encode(data).decode()}?="


def q_word(label: str, data: bytes) -> str:
    return f"=?{label}?Q?" + "".join(
        chr(b) if chr(b).isascii() and chr(b).isalnum() else f"={b:02X}" for b in data) + "?="


def transfer(cte: str, text: str, codec: str) -> bytes:
    """The body of a part: `text` (LF line ends) in `codec`, transfer-encoded,
    with CRLF line ends on the wire."""
    if cte == "base64":
        canonical = text.replace("\n", "\r\n").encode(codec)
        return base64.encodebytes(canonical).replace(b"\n", b"\r\n")
    if cte == "quoted-printable":
        return quopri.encodestring(text.encode(codec)).replace(b"\n", b"\r\n")
    return text.encode(codec).replace(b"\n", b"\r\n")


def charset_message(label: str, codec: str, text: str, cte: str, msgid: str) -> bytes:
    word = q_word if cte == "base64" else b_word
    subject = word(label, text.encode(codec))
    name = word(label, text.encode(codec))
    plain = transfer(cte, f"{text}\nsecond line\n", codec)
    html = transfer(cte, f"<p>{text}</p>\n", codec)
    head = (f"From: {name} <sender@client.test>\r\nTo: support@example.test\r\n"
            f"Subject: Re: {subject}\r\nMessage-ID: <{msgid}>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/alternative; boundary=\"sep\"\r\n\r\n").encode()
    part = lambda ctype: (f"--sep\r\nContent-Type: {ctype}; charset=\"{label}\"\r\n"
                          f"Content-Transfer-Encoding: {cte}\r\n\r\n").encode()
    raw = head + part("text/plain") + plain + b"\r\n" + part("text/html") + html + b"\r\n--sep--\r\n"
    return raw


def python_reading(raw: bytes) -> tuple[str, str, str, str]:
    """(subject, display name, text, html) as Python's email package decodes
    them, line ends as LF."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = msg.get_body(("html",)).get_content().replace("\r\n", "\n")
    return str(msg["Subject"]), msg["From"].addresses[0].display_name, text, html


@pytest.mark.parametrize("label,codec,text", SAMPLES, ids=[s[0] for s in SAMPLES])
def test_charset_subject_name_and_bodies(gw, label, codec, text):
    for cte in TRANSFERS:
        mid = new_msgid()
        raw = charset_message(label, codec, text, cte, mid)
        py = python_reading(raw)
        assert py == (f"Re: {text}", text, f"{text}\nsecond line\n", f"<p>{text}</p>\n"), \
            f"the sample itself is wrong: {py}"
        m, t = gw.stored(gw.send(raw, mail_from="sender@client.test"))
        what = f"{label} ({cte})"
        assert m["message_id"] == mid
        assert t["subject"] == py[0], f"{what} subject: {t['subject']!r}"
        assert m["from"]["name"] == py[1], f"{what} From display name: {m['from']!r}"
        assert m["text"].replace("\r\n", "\n").strip() == py[2].strip(), \
            f"{what} text/plain: {m['text']!r}"
        assert (m["html"] or "").replace("\r\n", "\n").strip() == py[3].strip(), \
            f"{what} text/html: {m['html']!r}"


def test_split_words_and_code_page_label(gw):
    """Encoded words split inside a character (UTF-8) and inside an
    ISO-2022-JP shift state, and the Windows label cp932: decoded as
    Python's decode_header/make_header and its cp932 codec read them."""
    utf8 = "プリンター".encode("utf-8")
    jis = "壊れました".encode("iso2022_jp")
    subject = (f"{b_word('UTF-8', utf8[:4])} {b_word('UTF-8', utf8[4:])}\r\n "
               f"{b_word('ISO-2022-JP', jis[:7])} {q_word('ISO-2022-JP', jis[7:])}")
    name = "請求書の件"
    body = f"{name}\nsecond line\n"
    mid = new_msgid()
    raw = (f"From: \"{b_word('cp932', name.encode('cp932'))}\" <sender@client.test>\r\n"
           f"To: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <{mid}>\r\n"
           f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=cp932\r\n"
           f"Content-Transfer-Encoding: base64\r\n\r\n").encode() + transfer("base64", body, "cp932")
    py = email.message_from_bytes(raw)
    py_subject = str(email.header.make_header(email.header.decode_header(py["Subject"])))
    assert py_subject == "プリンター壊れました", py_subject
    assert py.get_payload(decode=True).decode("cp932").replace("\r\n", "\n") == body

    m, t = gw.stored(gw.send(raw, mail_from="sender@client.test"))
    assert t["subject"] == py_subject
    assert m["from"]["name"] == name, m["from"]
    assert m["text"].replace("\r\n", "\n") == body, repr(m["text"])
