"""A small OAuth 2.0 token introspection endpoint (RFC 7662) on loopback,
for Dovecot's oauth2 passdb (`introspection_mode = post`): the real IMAP and
SMTP (through Dovecot SASL) servers of the XOAUTH2 tests ask it whether an
access token is good.

`POST /introspect` with the form `token=...` answers, as RFC 7662 section 2.2
says, `{"active": true, "username": ..., "scope": ..., "exp": ..., ...}` for
a token it issued and has not expired or revoked, `{"active": false}` for
any other. Every call is recorded (the token and the answer).

Used two ways:
- in pytest: `Introspection().start()`, `.issue(user)` -> a fresh token,
  `.expire(token)`, `.calls`, `.url`, `.stop()`;
- as a program for the Rust tests: `python3 introspection.py --token USER=TOKEN
  [--token ...]` serves those tokens, prints `PORT <n>` on its first line,
  then `CALL <token> <active>` for every call, and stops when stdin closes.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

PATH = "/introspect"


class Introspection:
    """The endpoint: tokens it knows (token -> user, expiry) and the calls it got."""

    def __init__(self, lifetime: int = 3600, scope: str = "https://mail.google.com/",
                 on_call=None, resolver=None):
        """`resolver(token) -> user or None`: tokens issued elsewhere (by the
        fake authorization server, fakes/oauth_server.py) count as issued too."""
        self.lifetime = lifetime
        self.scope = scope
        self.resolver = resolver
        self.tokens: dict[str, tuple[str, float]] = {}
        self.expired: set[str] = set()
        self.calls: list[tuple[str, bool]] = []
        self.on_call = on_call
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # -- tokens -------------------------------------------------------------------
    def issue(self, user: str, token: str | None = None) -> str:
        """A new active access token for `user` (or makes `token` one)."""
        token = token or "at-" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = (user, time.time() + self.lifetime)
        return token

    def expire(self, token: str):
        """The token is known but no longer active (it expired)."""
        with self.lock:
            self.expired.add(token)

    def answer(self, token: str) -> dict:
        known = None
        if self.resolver is not None and token not in self.tokens:
            user = self.resolver(token)
            known = (user, time.time() + self.lifetime) if user else None
        with self.lock:
            known = self.tokens.get(token, known)
            now = time.time()
            if token in self.expired:
                known = None
            active = known is not None and known[1] > now
            self.calls.append((token, active))
        if self.on_call is not None:
            self.on_call(token, active)
        if not active:
            return {"active": False}
        user, exp = known
        return {"active": True, "username": user, "scope": self.scope, "token_type": "Bearer",
                "exp": int(exp), "iat": int(now), "client_id": "mailgate-test", "sub": user}

    # -- server -------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def start(self) -> "Introspection":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace")
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                if self.path.split("?")[0] != PATH:
                    return self._send(404, {"error": "not_found"})
                if ctype != "application/x-www-form-urlencoded":
                    return self._send(400, {"error": "invalid_request",
                                            "error_description": "form body expected"})
                tokens = parse_qs(body).get("token", [])
                if len(tokens) != 1:
                    return self._send(400, {"error": "invalid_request",
                                            "error_description": "one token parameter"})
                self._send(200, owner.answer(tokens[0]))

            def _send(self, status: int, doc: dict):
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def main(argv: list[str]) -> int:
    out_lock = threading.Lock()

    def report(token: str, active: bool):
        with out_lock:
            print(f"CALL {token} {'true' if active else 'false'}", flush=True)

    fake = Introspection(on_call=report)
    args = iter(argv)
    for arg in args:
        if arg != "--token":
            print(f"unknown argument {arg!r}", file=sys.stderr)
            return 2
        user, _, token = next(args).partition("=")
        fake.issue(user, token)
    fake.start()
    print(f"PORT {fake.port}", flush=True)
    sys.stdin.read()
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
