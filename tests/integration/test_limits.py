"""Bounded resources, as documented in config/mailgate.toml: exact size limit,
recipients, line length, commands, connections, connections per IP,
connection rate."""

from clients import RawSMTPFrom, wait_sessions
from harness import RawSMTP
from mailmsg import make_msg, new_msgid


def _msg_of_size(n: int) -> bytes:
    head = make_msg("sized", msgid=new_msgid(), body=b"")
    assert n > len(head) + 2
    fill = n - len(head) - 2
    return head + b"z" * fill + b"\r\n"


def test_size_limit_is_exact(make_gateway):
    """A message of exactly max_message_size bytes is accepted; one byte more is 552."""
    limit = 20000
    g = make_gateway({"limits": {"max_message_size": limit}})
    with g.smtp() as s:
        assert s.esmtp_features["size"] == str(limit)
        assert s.mail("a@client.test", [f"SIZE={limit}"])[0] == 250, "SIZE equal to the limit is fine"
        s.rset()
        exact = _msg_of_size(limit)
        assert len(exact) == limit
        m, _ = g.stored(g.send(exact, smtp=s))
        assert m["size"] == limit
        assert s.mail("a@client.test")[0] == 250
        assert s.rcpt("support@example.test")[0] == 250
        code, text = s.data(_msg_of_size(limit + 1))
        assert code == 552 and text.startswith(b"5.3.4"), f"{code} {text!r}"


def test_max_recipients(make_gateway):
    g = make_gateway({"smtp": {"max_recipients": 3}})
    with g.smtp() as s:
        assert s.mail("a@client.test")[0] == 250
        for i in range(3):
            assert s.rcpt(f"user{i}@example.test")[0] == 250
        code, text = s.rcpt("user4@example.test")
        assert code == 452 and text.startswith(b"4.5.3"), f"{code} {text!r}"


def test_max_line_length(make_gateway):
    g = make_gateway({"smtp": {"max_line_length": 512}})
    with g.raw_smtp() as r:
        r.expect("EHLO client.test", 250)
        code, text = r.cmd("MAIL FROM:<" + "a" * 600 + "@client.test>")
        assert code == 500 and text.startswith("5.5.6"), f"{code} {text}"
        r.expect("NOOP", 250)  # the session goes on


def test_long_data_lines_are_fine(make_gateway):
    """max_line_length is about commands; message lines longer than 998 bytes (real
    mail has them) are still accepted."""
    g = make_gateway({"smtp": {"max_line_length": 512}})
    m, _ = g.stored(g.send(make_msg("long line", body="w" * 5000 + "\r\n")))
    assert "w" * 5000 in m["text"]


def test_max_commands(make_gateway):
    g = make_gateway({"smtp": {"max_commands": 20}})
    with g.raw_smtp() as r:
        codes = []
        for _ in range(30):
            try:
                codes.append(r.cmd("NOOP")[0])
            except (EOFError, ConnectionResetError, BrokenPipeError):
                break
            if codes[-1] == 421:
                break
        assert codes and codes[-1] == 421, f"no 421 after {len(codes)} commands: {codes}"
        assert len(codes) <= 21
        assert r.closed_by_server()


def _try_session(port):
    """Connect and return the first reply (code, text); (0, reason) when the connection fails."""
    try:
        r = RawSMTP(port, timeout=30)
    except OSError as e:
        return None, (0, repr(e))
    try:
        return r, r.reply()
    except (EOFError, OSError) as e:
        r.close()
        return None, (0, repr(e))


def test_max_connections(make_gateway):
    g = make_gateway({"smtp": {"max_connections": 2}})
    opened = []
    try:
        for _ in range(2):
            r, (code, text) = _try_session(g.smtp_port)
            assert code == 220, f"{code} {text}"
            opened.append(r)
            r.expect("EHLO client.test", 250)
        r, (code, text) = _try_session(g.smtp_port)
        if r:
            opened.append(r)
        assert code == 421 and text.startswith("4.7.0"), f"third connection: {code} {text}"
        assert r.closed_by_server()
    finally:
        for r in opened:
            r.close()


def test_connection_rate_per_ip(make_gateway):
    g = make_gateway({"smtp": {"connections_per_minute_per_ip": 5}})
    got = []
    for _ in range(12):
        r, (code, text) = _try_session(g.smtp_port)
        got.append(code)
        if r:
            r.close()
        if code == 421:
            assert text.startswith("4.7.0"), text
            break
    assert got[-1] == 421, f"no 421 4.7.0 after {len(got)} quick connections: {got}"


# ------------------------------------------------- connections per IP ---

def test_max_connections_per_ip(make_gateway):
    """Over smtp.max_connections_per_ip, a client gets 421 4.7.0 and is closed;
    another address is unaffected, and a closed connection frees its slot."""
    g = make_gateway({"smtp": {"max_connections_per_ip": 3, "max_connections": 100}})
    wait_sessions(g, 0)
    opened = []
    try:
        for _ in range(3):
            r = RawSMTPFrom(g.smtp_port, "127.0.0.1")
            opened.append(r)
            assert r.reply()[0] == 220
        fourth = RawSMTPFrom(g.smtp_port, "127.0.0.1")
        opened.append(fourth)
        code, text = fourth.reply()
        assert code == 421 and text.startswith("4.7.0"), f"{code} {text}"
        assert "concurrent connections from your address" in text, text
        assert fourth.closed_by_server()

        other = RawSMTPFrom(g.smtp_port, "127.0.0.2")
        opened.append(other)
        assert other.reply()[0] == 220, "127.0.0.2 is another client"
        other.expect("EHLO client.test", 250)

        m = g.metrics()
        assert m.get("mailgate_smtp_connections_total", outcome="refused_per_ip") == 1
        assert m.get("mailgate_smtp_connections_total", outcome="refused_limit") == 0

        opened[0].expect("QUIT", 221)
        opened[0].close()
        wait_sessions(g, 3)
        again = RawSMTPFrom(g.smtp_port, "127.0.0.1")
        opened.append(again)
        assert again.reply()[0] == 220, "the closed connection's slot is free again"
    finally:
        for r in opened:
            r.close()
    refused, _ = g.wait_log("concurrent connections per client address exceeded; refused")
    assert refused
