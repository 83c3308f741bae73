"""SMTP clients from a chosen loopback address, and a wait for the gateway's
open-session count: what the connection-budget tests need beyond harness.py.

Linux routes all of 127.0.0.0/8 to lo, so a socket bound to 127.0.0.2 reaches
a gateway listening on 127.0.0.1 as a different client address."""

from __future__ import annotations

import socket
import time

from harness import RawSMTP


class RawSMTPFrom(RawSMTP):
    """RawSMTP whose socket is bound to `source` (e.g. "127.0.0.2")."""

    def __init__(self, port: int, source: str = "127.0.0.1", tls_ctx=None, timeout: float = 30.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0))
        if tls_ctx is not None:
            self.sock = tls_ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""


def wait_sessions(g, n: int, timeout: float = 30.0):
    """Waits until the gateway counts exactly n open SMTP sessions (a client's
    close is noticed asynchronously, and harness start-up opens one)."""
    deadline = time.monotonic() + timeout
    while True:
        active = g.metrics().get("mailgate_smtp_sessions_active")
        if active == n:
            return
        assert time.monotonic() < deadline, f"sessions_active stays {active}, expected {n}"
        time.sleep(0.02)
