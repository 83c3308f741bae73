"""One connection budget for all SMTP listeners: the total cap, the per-IP cap
and the per-IP connection rate are shared by the plain (STARTTLS) port and the
implicit-TLS port. A client refused on one port is refused on the other, with
421 4.7.0 (over TLS on the TLS port); another client address is unaffected."""

from clients import RawSMTPFrom, wait_sessions


def _open(g, port_kind: str, source: str = "127.0.0.1"):
    """Connects to "plain" or "tls"; returns (client, first reply)."""
    if port_kind == "tls":
        r = RawSMTPFrom(g.tls_port, source, tls_ctx=g.tls_context())
    else:
        r = RawSMTPFrom(g.smtp_port, source)
    return r, r.reply()


def _refused(r, reply, words: str):
    code, text = reply
    assert code == 421 and text.startswith("4.7.0"), f"{code} {text}"
    assert words in text, text
    assert r.closed_by_server()


def test_total_cap_is_shared_by_both_ports(make_gateway):
    g = make_gateway({"smtp": {"max_connections": 2}})
    for full, other in (("plain", "tls"), ("tls", "plain")):
        wait_sessions(g, 0)
        opened = []
        try:
            for source in ("127.0.0.1", "127.0.0.2"):
                r, (code, text) = _open(g, full, source)
                opened.append(r)
                assert code == 220, f"{full}: {code} {text}"
            r, reply = _open(g, other, "127.0.0.3")
            opened.append(r)
            _refused(r, reply, "Too many connections, try again later")
        finally:
            for r in opened:
                r.close()
    assert g.metrics().get("mailgate_smtp_connections_total", outcome="refused_limit") == 2


def test_per_ip_cap_spans_both_ports(make_gateway):
    g = make_gateway({"smtp": {"max_connections_per_ip": 2}})
    wait_sessions(g, 0)
    opened = []
    try:
        for kind in ("plain", "tls"):
            r, (code, text) = _open(g, kind)
            opened.append(r)
            assert code == 220, f"{kind}: {code} {text}"
        for kind in ("plain", "tls"):
            r, reply = _open(g, kind)
            opened.append(r)
            _refused(r, reply, "concurrent connections from your address")
        r, (code, text) = _open(g, "tls", "127.0.0.2")
        opened.append(r)
        assert code == 220, f"another address: {code} {text}"
        r.expect("EHLO client.test", 250)
    finally:
        for r in opened:
            r.close()
    assert g.metrics().get("mailgate_smtp_connections_total", outcome="refused_per_ip") == 2


def _exhaust_rate(g, kind: str, source: str) -> int:
    """Opens and closes connections until the rate limit answers; returns how many got in."""
    for n in range(20):
        r, (code, text) = _open(g, kind, source)
        r.close()
        if code == 421:
            assert text.startswith("4.7.0") and "from your address" in text, text
            return n
        assert code == 220, f"{code} {text}"
    raise AssertionError(f"no 421 after 20 connections from {source} to the {kind} port")


def test_connection_rate_is_shared_by_both_ports(make_gateway):
    g = make_gateway({"smtp": {"connections_per_minute_per_ip": 5}})
    # 127.0.0.1 (harness start-up used some of its budget) on the plain port...
    assert _exhaust_rate(g, "plain", "127.0.0.1") <= 5
    r, reply = _open(g, "tls", "127.0.0.1")
    _refused(r, reply, "Too many connections from your address")
    r.close()
    # ...and 127.0.0.2, untouched so far, from the TLS side.
    assert _exhaust_rate(g, "tls", "127.0.0.2") == 5
    r, reply = _open(g, "plain", "127.0.0.2")
    _refused(r, reply, "Too many connections from your address")
    r.close()
    assert g.metrics().get("mailgate_smtp_connections_total", outcome="refused_rate") == 4
