"""Who may drive the HTTP API: the Host check (DNS rebinding), same-origin JSON
for state-changing requests (cross-site requests from any web page), and the
bearer token (case-insensitive scheme). Requests are written byte by byte, so
each header is exactly what a browser or an attacker would send.

The sync cases run against a real Dovecot: a refused request must not log in
upstream nor import anything; an accepted one does both."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess

import pytest

from dovecot import (  # noqa: F401 - fixtures
    PASSWORD, dovecot, gateway_with, mailbox, message_count, start_gateway, upstream)
from mailmsg import make_msg, new_msgid, unique

ATTACKER = "http://attacker.example"


class Raw:
    def __init__(self, status: int, headers, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def raw_http(port: int, method: str, path: str, headers: list[tuple[str, str]],
             body: bytes = b"", timeout: float = 120) -> Raw:
    """One request with exactly these headers (plus Content-Length for a body,
    and Connection: close); no Host unless given."""
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        r = http.client.HTTPResponse(s)
        r.begin()
        return Raw(r.status, r.headers, r.read())


def host(g) -> tuple[str, str]:
    return ("Host", f"127.0.0.1:{g.http_port}")


def same_origin(g) -> tuple[str, str]:
    return ("Origin", f"http://127.0.0.1:{g.http_port}")


def assert_json_error(r: Raw, status: int, code: str | None = None):
    assert r.status == status, r
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    if code is not None:
        assert body["error"] == code, body


# ----------------------------------------------------------------- Host ---

@pytest.mark.parametrize("path", ["/api/v1/tickets", "/api/v1/mailboxes", "/healthz", "/metrics",
                                  "/no/such/path"])
@pytest.mark.parametrize("name", ["rebind.attacker.example", "rebind.attacker.example:{port}",
                                  "localhost.attacker.example", "attacker.example:80"])
def test_foreign_host_is_misdirected(gw, path, name):
    r = raw_http(gw.http_port, "GET", path, [("Host", name.format(port=gw.http_port))])
    assert_json_error(r, 421, "misdirected")
    assert b"mailgate_" not in r.body and b"tickets" not in r.body, r


def test_rebinding_does_not_serve_the_tickets(gw):
    """A page on rebind.attacker.example whose name now resolves to 127.0.0.1:
    same origin for the browser, so it could read the answer; it gets none."""
    subject = f"private {unique()}"
    gw.send(make_msg(subject, msgid=new_msgid())).message()
    ok = raw_http(gw.http_port, "GET", "/api/v1/tickets?limit=500", [host(gw)])
    assert ok.status == 200 and subject.encode() in ok.body, ok
    r = raw_http(gw.http_port, "GET", "/api/v1/tickets?limit=500",
                 [("Host", f"rebind.attacker.example:{gw.http_port}"),
                  ("Sec-Fetch-Site", "same-origin")])
    assert_json_error(r, 421, "misdirected")
    assert subject.encode() not in r.body


@pytest.mark.parametrize("name", ["localhost", "localhost:{port}", "LocalHost:{port}",
                                  "127.0.0.1", "127.0.0.1:{port}", "[::1]:{port}"])
def test_loopback_hosts_are_served(gw, name):
    r = raw_http(gw.http_port, "GET", "/healthz", [("Host", name.format(port=gw.http_port))])
    assert r.status == 200 and r.json() == {"status": "ok"}, r


def test_missing_host_is_refused(gw):
    assert_json_error(raw_http(gw.http_port, "GET", "/healthz", []), 400)


def test_configured_names_are_served(make_gateway):
    """A Prometheus scraper sends the name it was configured with."""
    g = make_gateway({"http": {"allowed_hosts": ["localhost", "mailgate.internal",
                                                 "metrics.internal:9100"]}})
    for name in ("mailgate.internal", f"mailgate.internal:{g.http_port}", "metrics.internal:9100"):
        r = raw_http(g.http_port, "GET", "/metrics", [("Host", name)])
        assert r.status == 200 and b"mailgate_messages_received_total" in r.body, f"{name}: {r}"
    assert_json_error(raw_http(g.http_port, "GET", "/metrics", [("Host", "metrics.internal:9101")]),
                      421)
    assert_json_error(raw_http(g.http_port, "GET", "/metrics", [("Host", "other.internal")]), 421)


def test_bad_allowed_hosts_entry_names_the_key(make_gateway):
    g = make_gateway({"http": {"allowed_hosts": ["localhost", "http://x.example/"]}}, start=False)
    r = subprocess.run([g.binary, "check-config", "--config", str(g.config_path)],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "http.allowed_hosts" in r.stdout + r.stderr, r.stdout + r.stderr


# ---------------------------------------------- state-changing requests ---

@pytest.fixture
def pulled(make_gateway, dovecot):
    """A gateway whose `support` mailbox pulls from Dovecot only when told to
    (active = false, no password configured: it comes in the sync body)."""
    d = dovecot
    d.save("INBOX", make_msg(f"upstream {unique()}", msgid=new_msgid()))
    g = gateway_with(make_gateway, upstream(d, "imap", "tls", active=False, password_env=None),
                     password=None)
    assert mailbox(g)["status"] == "paused"
    return g, d


def assert_nothing_happened(g, d):
    assert d.logins() == 0 and d.auth_failures() == 0, f"Dovecot saw a login:\n{d.log_tail()}"
    assert message_count(g) == 0
    assert mailbox(g)["last_success"] is None


SYNC = "/api/v1/mailboxes/support/sync"
BODY = json.dumps({"password": PASSWORD}).encode()


def test_cross_site_text_plain_sync_is_refused(pulled):
    """What `fetch(url, {method: "POST", mode: "no-cors", body})` sends from any page."""
    g, d = pulled
    r = raw_http(g.http_port, "POST", SYNC,
                 [host(g), ("Origin", ATTACKER), ("Content-Type", "text/plain;charset=UTF-8"),
                  ("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Mode", "no-cors")], BODY)
    assert r.status in (403, 415), r
    assert_json_error(r, r.status)
    # The same without the tell-tale Origin / Sec-Fetch headers (an older browser).
    r = raw_http(g.http_port, "POST", SYNC, [host(g), ("Content-Type", "text/plain")], BODY)
    assert_json_error(r, 415, "unsupported_media_type")
    assert_nothing_happened(g, d)


@pytest.mark.parametrize("action", ["sync", "resume"])
def test_form_post_is_refused(pulled, action):
    """An HTML <form method=post> on another site: urlencoded or multipart."""
    g, d = pulled
    path = f"/api/v1/mailboxes/support/{action}"
    for ctype, body in (("application/x-www-form-urlencoded", b"password=" + PASSWORD.encode()),
                        ("multipart/form-data; boundary=x",
                         b'--x\r\nContent-Disposition: form-data; name="password"\r\n\r\n'
                         + PASSWORD.encode() + b"\r\n--x--\r\n")):
        r = raw_http(g.http_port, "POST", path, [host(g), ("Content-Type", ctype)], body)
        assert_json_error(r, 415, "unsupported_media_type")
    r = raw_http(g.http_port, "POST", path, [host(g)])
    assert_json_error(r, 415, "unsupported_media_type")
    assert_nothing_happened(g, d)


@pytest.mark.parametrize("origin", [ATTACKER, "null", "http://127.0.0.1:1", "http://localhost:{port}"])
def test_foreign_origin_is_refused(pulled, origin):
    """Even as JSON (which needs a CORS preflight that is never granted).
    localhost is another origin than 127.0.0.1: the origin must equal Host."""
    g, d = pulled
    o = origin.format(port=g.http_port)
    for path, body in ((SYNC, BODY), ("/api/v1/mailboxes/support/resume", b"{}")):
        r = raw_http(g.http_port, "POST", path,
                     [host(g), ("Origin", o), ("Content-Type", "application/json")], body)
        assert_json_error(r, 403, "cross_origin")
    assert_nothing_happened(g, d)


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_sec_fetch_site_cross_is_refused(pulled, site):
    g, d = pulled
    r = raw_http(g.http_port, "POST", SYNC,
                 [host(g), ("Content-Type", "application/json"), ("Sec-Fetch-Site", site)], BODY)
    assert_json_error(r, 403, "cross_origin")
    assert_nothing_happened(g, d)


def test_same_origin_json_post_is_served(pulled):
    """The page served by this very origin (or a script without Origin) may act."""
    g, d = pulled
    r = raw_http(g.http_port, "POST", SYNC,
                 [host(g), same_origin(g), ("Content-Type", "application/json; charset=utf-8"),
                  ("Sec-Fetch-Site", "same-origin")], BODY)
    assert r.status == 200, r
    assert r.json()["imported"] == 1, r
    assert d.logins() == 1 and message_count(g) == 1
    r = raw_http(g.http_port, "POST", "/api/v1/mailboxes/support/resume",
                 [host(g), ("Content-Type", "application/json")], b"{}")
    assert r.status == 200 and r.json()["name"] == "support", r


def test_get_stays_simple(gw):
    """Reads need no Content-Type and may carry any Origin (no CORS headers are
    sent, so a foreign page cannot read the answer)."""
    r = raw_http(gw.http_port, "GET", "/api/v1/tickets?limit=1", [host(gw), ("Origin", ATTACKER)])
    assert r.status == 200, r
    assert "Access-Control-Allow-Origin" not in r.headers


def test_method_not_allowed_lists_allow(gw):
    r = raw_http(gw.http_port, "DELETE", "/api/v1/tickets", [host(gw)])
    assert_json_error(r, 405, "method_not_allowed")
    assert r.headers.get("Allow") == "GET, HEAD", r.headers
    r = raw_http(gw.http_port, "GET", "/api/v1/mailboxes/support/sync", [host(gw)])
    assert_json_error(r, 405)
    assert r.headers.get("Allow") == "POST", r.headers
    # A CORS preflight is not granted either.
    r = raw_http(gw.http_port, "OPTIONS", "/api/v1/mailboxes/support/sync",
                 [host(gw), ("Origin", ATTACKER), ("Access-Control-Request-Method", "POST")])
    assert r.status == 405 and "Access-Control-Allow-Origin" not in r.headers, r


# ---------------------------------------------------------------- token ---

def test_token_scheme_is_case_insensitive(make_gateway):
    token = "tok-" + unique()
    g = make_gateway(env={"MAILGATE_TEST_TOKEN": token})
    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
        r = raw_http(g.http_port, "GET", "/api/v1/tickets", [host(g), ("Authorization", f"{scheme} {token}")])
        assert r.status == 200, f"{scheme}: {r}"
    for value in (f"Bearer {token}x", f"Bearer {token[:-1]}", f"Basic {token}", token, "Bearer "):
        r = raw_http(g.http_port, "GET", "/api/v1/tickets", [host(g), ("Authorization", value)])
        assert_json_error(r, 401, "unauthorized")
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), r.headers


def test_token_does_not_lift_the_other_checks(make_gateway, dovecot):
    """With a token: no token is 401; the token with a cross-site body type is
    still 415 and a foreign Host still 421; the token with same-origin JSON works."""
    token = "tok-" + unique()
    d = dovecot
    d.save("INBOX", make_msg(f"upstream {unique()}", msgid=new_msgid()))
    g = gateway_with(make_gateway, upstream(d, "imap", "tls", active=False, password_env=None),
                     password=None, env={"MAILGATE_TEST_TOKEN": token}, start=False)
    g.token = token
    start_gateway(g)
    auth = ("Authorization", f"bearer {token}")
    r = raw_http(g.http_port, "POST", SYNC, [host(g), ("Content-Type", "application/json")], BODY)
    assert_json_error(r, 401, "unauthorized")
    r = raw_http(g.http_port, "POST", SYNC, [host(g), auth, ("Content-Type", "text/plain")], BODY)
    assert_json_error(r, 415, "unsupported_media_type")
    r = raw_http(g.http_port, "POST", SYNC, [host(g), auth, ("Origin", ATTACKER),
                                             ("Content-Type", "application/json")], BODY)
    assert_json_error(r, 403, "cross_origin")
    r = raw_http(g.http_port, "GET", "/api/v1/tickets", [("Host", "rebind.attacker.example"), auth])
    assert_json_error(r, 421, "misdirected")
    assert_nothing_happened(g, d)
    r = raw_http(g.http_port, "POST", SYNC, [host(g), auth, ("Content-Type", "application/json")],
                 BODY)
    assert r.status == 200 and r.json()["imported"] == 1, r
    assert token not in g.log_text() and PASSWORD not in g.log_text()
