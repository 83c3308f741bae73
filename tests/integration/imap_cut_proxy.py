"""A loopback TCP proxy in front of an IMAP server that cuts the connection
right after the server's tagged OK to a chosen command.

The gateway is pointed at the proxy (plain IMAP, `security = "none"`: the
proxy must read the commands), the proxy forwards every byte both ways to the
server's plain port. It reads the client's commands (outside literals) and,
for the first `cuts` commands matching `pattern` (e.g. UID COPY), forwards
the server's tagged OK for it and then closes both sides at once: the server
has done the command and the client has heard so, but the connection dies
before the client's next step (STORE \\Deleted, EXPUNGE). That is the moment
a move without MOVE (COPY, STORE, EXPUNGE) must survive without leaving a
second copy behind when it is retried.

    with CutProxy(server.imap_port, rb"UID COPY", cuts=3) as proxy:
        ... upstream(..., port=proxy.port, security="none") ...
        proxy.cut_count, proxy.commands
"""

from __future__ import annotations

import re
import socket
import threading

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
_TAGGED = re.compile(rb"^(\S+) (\S+)")


class _Lines:
    """Splits an IMAP byte stream into protocol lines, skipping literals
    ({N} then N raw bytes), so that a message body never looks like a command
    or a tagged reply."""

    def __init__(self):
        self.buf = b""
        self.skip = 0

    def feed(self, data: bytes):
        """Yields (line, end offset in the bytes fed so far of this chunk)."""
        start = len(self.buf)
        self.buf += data
        pos = 0
        while True:
            if self.skip:
                take = min(self.skip, len(self.buf) - pos)
                self.skip -= take
                pos += take
                if self.skip:
                    break
            nl = self.buf.find(b"\r\n", pos)
            if nl < 0:
                break
            line = self.buf[pos:nl + 2]
            pos = nl + 2
            m = _LITERAL.search(line)
            if m:
                self.skip = int(m.group(1))
            yield line, pos - start
        self.buf = self.buf[pos:]


class CutProxy:
    def __init__(self, upstream_port: int, pattern: bytes, cuts: int = 1,
                 host: str = "127.0.0.1"):
        self.upstream = (host, upstream_port)
        self.pattern = re.compile(pattern, re.IGNORECASE)
        self.cuts_left = cuts
        self.cut_count = 0
        self.connections = 0
        self.commands: list[bytes] = []  # the commands that matched, as sent
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._closed = True
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            _close(s)

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self.connections += 1
                self._socks += [client, server]
            watched: set[bytes] = set()
            threading.Thread(target=self._client_to_server, args=(client, server, watched),
                             daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(server, client, watched),
                             daemon=True).start()

    def _client_to_server(self, client, server, watched):
        lines = _Lines()
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                for line, _ in lines.feed(data):
                    m = _TAGGED.match(line)
                    rest = line[len(m.group(1)) + 1:] if m else b""
                    if m and self.pattern.match(rest):
                        with self._lock:
                            if self.cuts_left > 0:
                                self.cuts_left -= 1
                                watched.add(m.group(1))
                                self.commands.append(line.rstrip(b"\r\n"))
                # Registered before the server can see the command.
                server.sendall(data)
        except OSError:
            pass
        finally:
            _close(server)
            _close(client)

    def _server_to_client(self, server, client, watched):
        lines = _Lines()
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                cut_at = None
                for line, end in lines.feed(data):
                    m = _TAGGED.match(line)
                    if m and m.group(1) in watched and m.group(2).upper() == b"OK":
                        cut_at = end
                        break
                if cut_at is None:
                    client.sendall(data)
                    continue
                # The server's OK goes through, then the connection dies.
                client.sendall(data[:cut_at])
                with self._lock:
                    self.cut_count += 1
                break
        except OSError:
            pass
        finally:
            _close(client)
            _close(server)


def _close(s: socket.socket):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
