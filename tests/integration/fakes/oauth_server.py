"""A fake OAuth2 authorization server (token + authorization endpoints) over
HTTPS, written from the published documentation, not from our client:

- RFC 6749 section 5.1 (successful token response: access_token, token_type,
  expires_in, refresh_token, scope; JSON, Cache-Control: no-store) and 5.2
  (error response: 400 with {"error", "error_description"}; invalid_client
  may be 401), section 6 (refresh: grant_type=refresh_token, refresh_token,
  scope), section 4.1 (authorization code) and RFC 7636 (PKCE S256).
- Microsoft identity platform v2: POST /{tenant}/oauth2/v2.0/token with
  client_id, client_secret, scope, refresh_token, grant_type; the answer
  carries a new refresh_token every time (rotation) and ext_expires_in;
  errors like {"error": "invalid_grant", "error_description": "AADSTS70008:
  ...", "error_codes": [70008], "timestamp", "trace_id", "correlation_id"}.
  Authorization: GET /{tenant}/oauth2/v2.0/authorize.
- Google: POST /token (refresh answers without a new refresh_token unless
  rotation is switched on), {"error": "invalid_grant", "error_description":
  "Token has been expired or revoked."}. Authorization: GET /o/oauth2/v2/auth.

The authorization endpoint plays the consenting user: it redirects at once
to redirect_uri with code and state.

Control API (tests drive the fake): POST /control with a JSON object:
  {"lifetime": 3600}          expires_in of new access tokens
  {"rotate": true}            issue a new refresh token on every refresh and
                              invalidate the old one
  {"fail": {"status": 503, "count": 2, "retry_after": 7}}   next N token
                              requests fail with that status
  {"revoke": "all" | "<refresh token>"}   invalid_grant from then on
  {"add_refresh_token": "..."} a refresh token the fake accepts
GET /control/state -> {"refreshes", "codes", "valid_refresh_tokens",
  "issued_access_tokens", "issued_refresh_tokens", "requests": [{"path",
  "grant_type", "scope", "client_id"}]}.

Run: python3 oauth_server.py --cert cert.pem --key key.pem --flavor microsoft
  --client-id ID --client-secret SECRET [--refresh-token RT] [--port N]
Prints one JSON line {"port": N} when it listens.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MS_EXPIRED = ("AADSTS70008: The provided authorization code or refresh token has expired "
              "due to inactivity. Send a new interactive authorization request for this "
              "user and resource.")
MS_BAD_SECRET = ("AADSTS7000215: Invalid client secret provided. Ensure the secret being "
                 "sent in the request is the client secret value, not the client secret ID.")
GOOGLE_REVOKED = "Token has been expired or revoked."


class State:
    def __init__(self, flavor, client_id, client_secret, refresh_tokens):
        self.lock = threading.Lock()
        self.flavor = flavor
        self.client_id = client_id
        self.client_secret = client_secret
        self.valid = set(refresh_tokens)
        self.lifetime = 3600
        self.rotate = flavor == "microsoft"
        self.fail = None  # {"status", "count", "retry_after"}
        self.refreshes = 0
        self.codes_redeemed = 0
        self.codes = {}  # code -> {"challenge", "redirect_uri", "scope"}
        self.issued_access = []
        self.issued_refresh = []
        self.requests = []

    def snapshot(self):
        return {
            "refreshes": self.refreshes,
            "codes": self.codes_redeemed,
            "valid_refresh_tokens": sorted(self.valid),
            "issued_access_tokens": list(self.issued_access),
            "issued_refresh_tokens": list(self.issued_refresh),
            "requests": list(self.requests),
        }


def make_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet
            pass

        def _json(self, status, body, headers=None):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Pragma", "no-cache")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status, error, description):
            body = {"error": error, "error_description": description}
            if state.flavor == "microsoft":
                body.update({
                    "error_codes": [int(description[6:description.index(":")])]
                    if description.startswith("AADSTS") else [],
                    "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
                    "trace_id": str(uuid.uuid4()),
                    "correlation_id": str(uuid.uuid4()),
                })
            self._json(status, body)

        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        # ---------------------------------------------------- routes ---

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/control/state":
                with state.lock:
                    return self._json(200, state.snapshot())
            if url.path.endswith("/oauth2/v2.0/authorize") or url.path == "/o/oauth2/v2/auth":
                return self._authorize(urllib.parse.parse_qs(url.query))
            self._json(404, {"error": "not_found"})

        def do_POST(self):
            url = urllib.parse.urlsplit(self.path)
            body = self._body()
            if url.path == "/control":
                return self._control(json.loads(body or b"{}"))
            if url.path.endswith("/oauth2/v2.0/token") or url.path == "/token":
                return self._token(url.path, body)
            self._json(404, {"error": "not_found"})

        def _control(self, c):
            with state.lock:
                if "lifetime" in c:
                    state.lifetime = int(c["lifetime"])
                if "rotate" in c:
                    state.rotate = bool(c["rotate"])
                if "fail" in c:
                    state.fail = dict(c["fail"]) if c["fail"] else None
                if "revoke" in c:
                    if c["revoke"] == "all":
                        state.valid.clear()
                    else:
                        state.valid.discard(c["revoke"])
                if "add_refresh_token" in c:
                    state.valid.add(c["add_refresh_token"])
                if "client_secret" in c:
                    state.client_secret = c["client_secret"]
                return self._json(200, state.snapshot())

        def _authorize(self, q):
            one = lambda k: (q.get(k) or [None])[0]  # noqa: E731
            redirect = one("redirect_uri")
            if one("client_id") != state.client_id or not redirect:
                return self._json(400, {"error": "invalid_request",
                                        "error_description": "unknown client_id or no redirect_uri"})
            if one("response_type") != "code":
                return self._redirect(redirect, {"error": "unsupported_response_type",
                                                 "state": one("state") or ""})
            if one("code_challenge_method") != "S256" or not one("code_challenge"):
                return self._redirect(redirect, {"error": "invalid_request",
                                                 "error_description": "PKCE S256 required",
                                                 "state": one("state") or ""})
            code = "code-" + secrets.token_urlsafe(16)
            with state.lock:
                state.codes[code] = {"challenge": one("code_challenge"), "redirect_uri": redirect,
                                     "scope": one("scope") or ""}
            self._redirect(redirect, {"code": code, "state": one("state") or ""})

        def _redirect(self, uri, params):
            sep = "&" if "?" in uri else "?"
            self.send_response(302)
            self.send_header("Location", uri + sep + urllib.parse.urlencode(params))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _client_ok(self, form):
            cid, secret = form.get("client_id"), form.get("client_secret")
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                raw = base64.b64decode(auth[6:]).decode()
                user, _, pw = raw.partition(":")
                cid, secret = urllib.parse.unquote(user), urllib.parse.unquote(pw)
            return cid == state.client_id and secret == state.client_secret

        def _token(self, path, body):
            if "application/x-www-form-urlencoded" not in (self.headers.get("Content-Type") or ""):
                return self._error(400, "invalid_request", "form encoding required")
            form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
            grant = form.get("grant_type")
            with state.lock:
                state.requests.append({"path": path, "grant_type": grant,
                                       "scope": form.get("scope"), "client_id": form.get("client_id")})
                fail = state.fail
                if fail and fail.get("count", 0) > 0:
                    fail["count"] -= 1
                    headers = {}
                    if fail.get("retry_after") is not None:
                        headers["Retry-After"] = str(fail["retry_after"])
                    data = b"<html>temporarily unavailable</html>"
                    self.send_response(int(fail.get("status", 503)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if not self._client_ok(form):
                    desc = MS_BAD_SECRET if state.flavor == "microsoft" else "Unauthorized"
                    return self._error(401, "invalid_client", desc)
                if state.flavor == "microsoft" and not form.get("scope"):
                    return self._error(400, "invalid_request",
                                       "AADSTS90014: The required field 'scope' is missing.")
                if grant == "refresh_token":
                    rt = form.get("refresh_token")
                    if rt not in state.valid:
                        desc = MS_EXPIRED if state.flavor == "microsoft" else GOOGLE_REVOKED
                        return self._error(400, "invalid_grant", desc)
                    state.refreshes += 1
                    new_rt = None
                    if state.rotate:
                        new_rt = "rt-" + secrets.token_urlsafe(24)
                        state.valid.discard(rt)
                        state.valid.add(new_rt)
                    return self._issue(form.get("scope") or "", new_rt)
                if grant == "authorization_code":
                    entry = state.codes.pop(form.get("code"), None)
                    verifier = form.get("code_verifier") or ""
                    digest = base64.urlsafe_b64encode(
                        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                    if (entry is None or entry["redirect_uri"] != form.get("redirect_uri")
                            or digest != entry["challenge"]):
                        desc = ("AADSTS54005: OAuth2 Authorization code was already redeemed, "
                                "please retry with a new valid code or use an existing refresh token."
                                if state.flavor == "microsoft" else "Bad Request")
                        return self._error(400, "invalid_grant", desc)
                    state.codes_redeemed += 1
                    new_rt = "rt-" + secrets.token_urlsafe(24)
                    state.valid.add(new_rt)
                    return self._issue(form.get("scope") or entry["scope"], new_rt)
                return self._error(400, "unsupported_grant_type",
                                   f"grant_type {grant!r} is not supported")

        def _issue(self, scope, refresh_token):
            # Called with the lock held.
            access = "at-" + secrets.token_urlsafe(32)
            state.issued_access.append(access)
            body = {"token_type": "Bearer", "scope": scope, "expires_in": state.lifetime,
                    "access_token": access}
            if state.flavor == "microsoft":
                body["ext_expires_in"] = state.lifetime
            if refresh_token:
                state.issued_refresh.append(refresh_token)
                body["refresh_token"] = refresh_token
            self._json(200, body)

    return Handler


class OAuthFake:
    """The fake run as its own process, for tests: `OAuthFake(workdir, certs)`
    where certs holds ca.pem, cert.pem, key.pem (the suite's private CA)."""

    def __init__(self, workdir, certs: dict, flavor="microsoft", client_id="client-id",
                 client_secret="client-secret", refresh_tokens=(), lifetime=3600):
        import subprocess
        from pathlib import Path
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        for name in ("ca.pem", "cert.pem", "key.pem"):
            (self.dir / name).write_bytes(certs[name])
        self.ca = self.dir / "ca.pem"
        self.flavor = flavor
        args = [sys.executable, __file__, "--cert", "cert.pem", "--key", "key.pem",
                "--flavor", flavor, "--client-id", client_id, "--client-secret", client_secret,
                "--lifetime", str(lifetime)]
        for rt in refresh_tokens:
            args += ["--refresh-token", rt]
        self.proc = subprocess.Popen(args, cwd=self.dir, stdout=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        self.port = json.loads(self.proc.stdout.readline())["port"]

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def token_url(self, tenant="contoso") -> str:
        if self.flavor == "microsoft":
            return f"{self.base}/{tenant}/oauth2/v2.0/token"
        return f"{self.base}/token"

    def authorize_url(self, tenant="contoso") -> str:
        if self.flavor == "microsoft":
            return f"{self.base}/{tenant}/oauth2/v2.0/authorize"
        return f"{self.base}/o/oauth2/v2/auth"

    def _request(self, method, path, body=None, headers=None):
        import http.client
        ctx = ssl.create_default_context(cafile=str(self.ca))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def control(self, **settings) -> dict:
        status, body = self._request("POST", "/control", json.dumps(settings).encode(),
                                     {"Content-Type": "application/json"})
        assert status == 200, body
        return json.loads(body)

    def state(self) -> dict:
        return json.loads(self._request("GET", "/control/state")[1])

    def refresh(self, refresh_token, client_id, client_secret, scope="offline_access"):
        """A refresh as any client would send it: (status, JSON answer)."""
        form = urllib.parse.urlencode({"grant_type": "refresh_token", "client_id": client_id,
                                       "client_secret": client_secret,
                                       "refresh_token": refresh_token, "scope": scope})
        path = urllib.parse.urlsplit(self.token_url()).path
        status, body = self._request("POST", path, form.encode(),
                                     {"Content-Type": "application/x-www-form-urlencoded"})
        return status, json.loads(body)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--flavor", choices=["microsoft", "google"], default="microsoft")
    p.add_argument("--client-id", required=True)
    p.add_argument("--client-secret", required=True)
    p.add_argument("--refresh-token", action="append", default=[])
    p.add_argument("--lifetime", type=int, default=3600)
    a = p.parse_args()
    state = State(a.flavor, a.client_id, a.client_secret, a.refresh_token)
    state.lifetime = a.lifetime
    server = ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(state))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
