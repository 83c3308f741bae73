"""HTTP connection limits: idle connections filling http.max_connections do not
lock /healthz out (the longest-idle one is closed to make room), and a client
that never finishes its headers, or idles on keep-alive, is disconnected after
http.header_read_timeout."""

from __future__ import annotations

import http.client
import socket

CAP = 6


def connect(g, timeout: float = 60) -> socket.socket:
    return socket.create_connection(("127.0.0.1", g.http_port), timeout=timeout)


def closed_by_server(s: socket.socket) -> bool:
    """Reads until the server closes (True) or the socket timeout (False);
    any response bytes before the close (e.g. a 408) are allowed."""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def keep_alive_request(s: socket.socket, port: int) -> int:
    s.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    r = http.client.HTTPResponse(s)
    r.begin()
    r.read()
    assert not r.will_close, "the server should keep the connection open"
    return r.status


def test_healthz_answers_when_idle_connections_fill_the_cap(make_gateway):
    # A header timeout far beyond the test: only making room can let /healthz in.
    g = make_gateway({"http": {"max_connections": CAP, "header_read_timeout": "10m"}})
    idle = []
    try:
        # Half never send a byte, half made one request and idle on keep-alive.
        for i in range(CAP):
            s = connect(g)
            if i % 2:
                assert keep_alive_request(s, g.http_port) == 200
            idle.append(s)
        for attempt in range(3):
            r = g.http("GET", "/healthz", timeout=60)
            assert r.status == 200 and r.json() == {"status": "ok"}, r
        # Room was made by closing the connections idle longest: the first ones.
        idle[0].settimeout(60)
        assert closed_by_server(idle[0]), "the longest-idle connection should have been closed"
        # The newest idle ones are still served.
        assert keep_alive_request(idle[-1], g.http_port) == 200
    finally:
        for s in idle:
            s.close()
    assert g.alive()


def test_connection_that_never_sends_its_headers_is_closed(make_gateway):
    g = make_gateway({"http": {"header_read_timeout": "1s"}})
    with connect(g, timeout=60) as silent, connect(g, timeout=60) as partial:
        partial.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{g.http_port}\r\n".encode())
        assert closed_by_server(partial), "a request whose headers never end must be cut off"
        assert closed_by_server(silent), "a connection that never sends a request must be closed"
    assert g.http("GET", "/healthz").status == 200


def test_idle_keep_alive_connection_is_closed(make_gateway):
    g = make_gateway({"http": {"header_read_timeout": "1s"}})
    with connect(g, timeout=60) as s:
        assert keep_alive_request(s, g.http_port) == 200
        assert closed_by_server(s), "an idle keep-alive connection must be closed"
