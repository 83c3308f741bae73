"""Client-supplied values cannot forge or disguise log lines.

An SMTPUTF8 sender address (and a Message-ID) full of C1 controls, Unicode
line/paragraph separators and bidi overrides is accepted as mail, but the
gateway's stderr log shows those characters only as \\u{..} escapes."""

import re

from mailmsg import make_msg, new_msgid

# NEL, the 8-bit CSI, LINE/PARAGRAPH SEPARATOR, RLO, LRI, RLM, ALM.
EVIL = "\u0085\u009b31m\u2028\u2029\u202e\u2066\u200f\u061c"
# Everything that must never be in a log line raw (a line's own LF aside).
FORBIDDEN = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _raw_log(g) -> str:
    # The bytes as written, not harness.log_text() (which strips ANSI sequences).
    return (g.workdir / f"stderr.{g.starts}.log").read_bytes().decode("utf-8")


def _send(r, sender: str, msg: bytes):
    r.expect("EHLO client.test", 250)
    r.expect(f"MAIL FROM:<{sender}> SMTPUTF8".encode(), 250)
    r.expect("RCPT TO:<support@example.test>", 250)
    r.expect("DATA", 354)
    r.send(msg + b".\r\n")
    code, text = r.reply()
    assert code == 250, f"{code} {text}"
    return text


def test_controls_and_bidi_in_client_values_are_escaped_in_the_log(make_gateway):
    g = make_gateway()
    sender = f"fake{EVIL}line@client.test"
    msgid = new_msgid(f"x{EVIL}.client.test")
    accepted = make_msg("log forging", msgid=msgid, from_=f"<{sender}>")
    rejected = make_msg("log forging, no From", msgid=new_msgid(), from_=None)
    with g.raw_smtp() as r:
        assert "message" in _send(r, sender, accepted)
        assert "rejection" in _send(r, sender, rejected)
        r.expect("QUIT", 221)

    g.wait_log("message rejected")
    log = _raw_log(g)
    accepted_lines = [l for l in log.splitlines() if "message accepted" in l]
    rejected_lines = [l for l in log.splitlines() if "message rejected" in l]
    assert accepted_lines and rejected_lines, log[-3000:]
    # The sender is in both lines, in escaped form...
    escaped = "fake\\u{85}\\u{9b}31m\\u{2028}\\u{2029}\\u{202e}\\u{2066}\\u{200f}\\u{61c}line@client.test"
    for line in accepted_lines + rejected_lines:
        assert escaped in line, line
    # ...and nothing anywhere in the log is a raw control, separator or bidi mark.
    bad = [(i, m.group()) for i, l in enumerate(log.split("\n")) if (m := FORBIDDEN.search(l))]
    assert not bad, f"raw characters in the log: {bad[:5]}"
