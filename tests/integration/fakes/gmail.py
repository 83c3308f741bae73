"""A fake of the Gmail API (users.getProfile, users.messages
list/get/modify/send, users.labels list/get/create) over HTTPS, written from Google's REST
reference and its "Resolve errors" / "Usage limits" guides:

- Paths under /gmail/v1/users/{userId}/ ("me" or the account's address).
- Bearer tokens: only the accepted ones; anything else gets Google's 401
  body (status UNAUTHENTICATED, reason authError) and WWW-Authenticate.
- messages.list: `q` with `is:unread`, `is:read`, `label:NAME` (name or id,
  case-insensitive, spaces or hyphens), `-label:`, `in:inbox`; newest first;
  `maxResults` (default 100, capped at 500 or the control API's cap),
  opaque `nextPageToken`, `resultSizeEstimate`; SPAM and TRASH left out
  unless includeSpamTrash.
- messages.get: format=minimal | metadata (payload.headers, metadataHeaders)
  | raw (base64url) | full (headers only, no parts: enough here).
- messages.modify: addLabelIds / removeLabelIds, unknown ids are a 400.
- labels.list / labels.get (with counts) / labels.create (409 on a name
  that exists, compared case-insensitively).
- messages.send: JSON {"raw": base64url}, or the media upload URI
  (/upload/gmail/v1/..., uploadType=media, Content-Type message/rfc822,
  35 MB at most, else 413); 400 without a recipient.
- users.getProfile: {"emailAddress", "messagesTotal", "threadsTotal",
  "historyId"} of the one account.
- Injectable errors: 429 rateLimitExceeded (RESOURCE_EXHAUSTED), 403
  userRateLimitExceeded / rateLimitExceeded (domain usageLimits), any status.

Control API for tests (no token), under /_control/:
  POST messages {"raw_b64": standard base64, "labelIds": [...]} -> {"id"}
  POST tokens {"tokens": [...], "limits": {"tok": N}}  (tok valid for N more requests,
               refused from then on)
  POST errors {"status": 429, "reason": "...", "count": N, "match": "substring of METHOD path?query",
               "retry_after": seconds (optional), "delay": seconds (optional: the
               request stalls that long, then gets the error)}
GmailFake(..., resolver=f): a token not in `tokens` is also taken when f(token)
is true (e.g. "the authorization server issued it"), unless refused.
  POST page {"max": N}
  GET  state -> {"messages": [{id, labelIds, size}], "labels": [...], "requests": [...],
                 "sent": [standard base64 of each sent message]}

Run alone: python3 gmail.py --cert C --key K [--port 0] [--token T ...]
prints "PORT <n>" once listening. Or import GmailFake in pytest.
"""

import argparse
import base64
import email.parser
import email.policy
import itertools
import json
import secrets
import shlex
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

SYSTEM_LABELS = ["INBOX", "UNREAD", "SENT", "SPAM", "TRASH", "STARRED", "IMPORTANT", "DRAFT",
                 "CATEGORY_PERSONAL"]
MAX_RESULTS = 500
# users.messages.send media upload: "Maximum file size: 35MB".
UPLOAD_MAX = 35 * 1024 * 1024


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def google_error(code: int, message: str, reason: str, status: str,
                 domain: str = "global", **extra) -> dict:
    item = {"message": message, "domain": domain, "reason": reason, **extra}
    return {"error": {"code": code, "message": message, "errors": [item], "status": status}}


def rate_error(code: int, reason: str) -> dict:
    if code == 429:
        return google_error(429, "Too many concurrent requests for user.", reason or
                            "rateLimitExceeded", "RESOURCE_EXHAUSTED")
    text = {"userRateLimitExceeded": "User-rate limit exceeded.",
            "rateLimitExceeded": "Rate Limit Exceeded"}.get(reason, "Forbidden")
    return google_error(code, text, reason or "forbidden",
                        "PERMISSION_DENIED", domain="usageLimits" if "Limit" in reason else "global")


class State:
    def __init__(self, address: str):
        self.lock = threading.Lock()
        self.address = address
        self.labels = {name: {"id": name, "name": name, "type": "system"} for name in SYSTEM_LABELS}
        self.messages: dict[str, dict] = {}
        self.tokens: set[str] = set()
        self.limits: dict[str, int] = {}
        self.resolver = None  # optional token -> bool, for tokens not in `tokens`
        self.refused: set[str] = set()
        self.errors: list[dict] = []
        self.page_max = MAX_RESULTS
        self.page_tokens: dict[str, tuple[str, int]] = {}
        self.requests: list[str] = []
        self.sent: list[bytes] = []
        self.ids = itertools.count(0x18c0000000000000 + secrets.randbelow(1 << 40))
        self.label_ids = itertools.count(1)
        self.clock = int(time.time() * 1000)

    def add_message(self, raw: bytes, label_ids=None) -> str:
        mid = format(next(self.ids), "x")
        self.clock += 1000
        self.messages[mid] = {"id": mid, "threadId": mid,
                              "labelIds": list(label_ids or ["INBOX", "UNREAD"]),
                              "raw": raw, "internalDate": str(self.clock)}
        return mid

    def label_by(self, text: str):
        t = text.lower()
        for label in self.labels.values():
            names = {label["id"].lower(), label["name"].lower(),
                     label["name"].lower().replace(" ", "-").replace("/", "-")}
            if t in names:
                return label
        return None

    def matches(self, message: dict, q: str) -> bool:
        for term in shlex.split(q):
            negate = term.startswith("-")
            term = term[1:] if negate else term
            key, _, value = term.partition(":")
            key = key.lower()
            if key == "is" and value.lower() in ("unread", "read"):
                hit = ("UNREAD" in message["labelIds"]) == (value.lower() == "unread")
            elif key in ("label", "in"):
                label = self.label_by(value)
                hit = label is not None and label["id"] in message["labelIds"]
            else:
                raise ValueError(f"the fake does not support the search term {term!r}")
            if hit == negate:
                return False
        return True


def header_list(raw: bytes, wanted=None) -> list[dict]:
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    out = []
    for name, value in parsed.items():
        if wanted and name.lower() not in wanted:
            continue
        value = str(value).replace("\r\n", "").replace("\n", "")
        out.append({"name": name, "value": value})
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ESF"

    def log_message(self, fmt, *args):  # quiet
        pass

    @property
    def state(self) -> State:
        return self.server.state  # type: ignore[attr-defined]

    # -- plumbing -----------------------------------------------------------
    def reply(self, code: int, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        return json.loads(self.raw_body) if self.raw_body else {}

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def route(self, method: str):
        url = urlsplit(self.path)
        query = {k: v for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        # Media upload URIs are the resource URI with an /upload prefix.
        self.upload = parts[:1] == ["upload"]
        if self.upload:
            parts = parts[1:]
        # Read the body first: an early answer must not leave it on a kept-alive connection.
        raw_body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.raw_body = raw_body
        try:
            if parts[:1] == ["_control"]:
                return self.control(method, parts[1:])
            st = self.state
            with st.lock:
                st.requests.append(f"{method} {url.path}?{url.query}")
            if parts[:3] != ["gmail", "v1", "users"] or len(parts) < 5:
                return self.reply(404, google_error(404, "Not Found", "notFound", "NOT_FOUND"))
            if not self.authorized():
                return
            if self.injected(method, f"{url.path}?{url.query}"):
                return
            user, rest = parts[3], parts[4:]
            if user not in ("me", st.address):
                return self.reply(403, google_error(403, "Delegation denied for " + st.address,
                                                    "forbidden", "PERMISSION_DENIED"))
            data = self.body() if method == "POST" and not self.upload else {}
            with st.lock:
                return self.api(method, rest, query, data)
        except (ValueError, KeyError, json.JSONDecodeError) as e:
            return self.reply(400, google_error(400, str(e), "badRequest", "INVALID_ARGUMENT"))

    def authorized(self) -> bool:
        st = self.state
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        with st.lock:
            ok = token in st.tokens or (
                token is not None and st.resolver is not None and token not in st.refused
                and st.resolver(token))
            if ok and token in st.limits:
                st.limits[token] -= 1
                if st.limits[token] < 0:
                    st.tokens.discard(token)
                    st.refused.add(token)
                    del st.limits[token]
                    ok = False
        if not ok:
            msg = ("Request had invalid authentication credentials. Expected OAuth 2 access "
                   "token, login cookie or other valid authentication credential.")
            self.reply(401, google_error(401, msg, "authError", "UNAUTHENTICATED",
                                         location="Authorization", locationType="header"),
                       {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", '
                                            'error="invalid_token"'})
        return ok

    def injected(self, method: str, target: str) -> bool:
        st = self.state
        with st.lock:
            for e in st.errors:
                if e["count"] > 0 and e.get("match", "") in f"{method} {target}":
                    e["count"] -= 1
                    code, reason = e["status"], e.get("reason", "")
                    break
            else:
                return False
        if e.get("delay"):
            time.sleep(float(e["delay"]))
        headers = {}
        if e.get("retry_after") is not None:
            headers["Retry-After"] = str(e["retry_after"])
        if code in (429, 403):
            body = rate_error(code, reason)
        else:
            body = google_error(code, e.get("message", "Backend Error"), reason or "backendError",
                                "UNAVAILABLE" if code >= 500 else "FAILED_PRECONDITION")
        self.reply(code, body, headers)
        return True

    # -- the API ------------------------------------------------------------
    def api(self, method, rest, query, data):
        st = self.state
        one = lambda name, default=None: query.get(name, [default])[0]  # noqa: E731
        if rest == ["profile"] and method == "GET":
            # users.getProfile: the account's address and counts.
            return self.reply(200, {"emailAddress": st.address,
                                    "messagesTotal": len(st.messages),
                                    "threadsTotal": len({m["threadId"] for m in st.messages.values()}),
                                    "historyId": str(1000 + len(st.messages))})
        if rest == ["messages"] and method == "GET":
            q = one("q", "")
            include = one("includeSpamTrash", "false") == "true"
            label_ids = query.get("labelIds", [])
            found = [m for m in st.messages.values()
                     if (include or not {"SPAM", "TRASH"} & set(m["labelIds"]))
                     and all(l in m["labelIds"] for l in label_ids) and st.matches(m, q)]
            found.sort(key=lambda m: int(m["internalDate"]), reverse=True)
            size = min(int(one("maxResults", "100")), MAX_RESULTS, st.page_max)
            offset = 0
            if one("pageToken"):
                key, offset = st.page_tokens[one("pageToken")]
                if key != q:
                    raise ValueError("Invalid pageToken")
            page = found[offset:offset + size]
            body = {"messages": [{"id": m["id"], "threadId": m["threadId"]} for m in page],
                    "resultSizeEstimate": len(found)}
            if not page:
                del body["messages"]
            if offset + size < len(found):
                token = format(secrets.randbits(64), "020d")
                st.page_tokens[token] = (q, offset + size)
                body["nextPageToken"] = token
            return self.reply(200, body)
        if self.upload and rest != ["messages", "send"]:
            return self.reply(404, google_error(404, "Not Found", "notFound", "NOT_FOUND"))
        if rest == ["messages", "send"] and method == "POST" and self.upload:
            # Simple upload: the message itself is the body (message/rfc822),
            # up to the method's 35 MB maximum.
            if one("uploadType") != "media":
                raise ValueError("Invalid upload request: uploadType=media expected here")
            ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not ctype.startswith("message/"):
                return self.reply(400, google_error(
                    400, f"Media type '{ctype}' is not supported. Valid media types: [message/*]",
                    "badContent", "INVALID_ARGUMENT"))
            if len(self.raw_body) > UPLOAD_MAX:
                return self.reply(413, google_error(413, "Request Too Large", "uploadTooLarge",
                                                    "INVALID_ARGUMENT"))
            data = {"raw": base64.urlsafe_b64encode(self.raw_body).decode()}
        if rest == ["messages", "send"] and method == "POST":
            raw = base64.urlsafe_b64decode(data["raw"] + "=" * (-len(data["raw"]) % 4))
            heads = {h["name"].lower() for h in header_list(raw)}
            if not heads & {"to", "cc", "bcc"}:
                return self.reply(400, google_error(400, "Invalid To header", "invalidArgument",
                                                    "INVALID_ARGUMENT"))
            st.sent.append(raw)
            mid = st.add_message(raw, ["SENT"])
            return self.reply(200, {"id": mid, "threadId": mid, "labelIds": ["SENT"]})
        if len(rest) >= 2 and rest[0] == "messages":
            m = st.messages.get(rest[1])
            if m is None:
                return self.reply(404, google_error(404, "Requested entity was not found.",
                                                    "notFound", "NOT_FOUND"))
            if len(rest) == 2 and method == "GET":
                return self.reply(200, self.message(m, one("format", "full"),
                                                    query.get("metadataHeaders")))
            if rest[2:] == ["modify"] and method == "POST":
                add, remove = data.get("addLabelIds", []), data.get("removeLabelIds", [])
                for lid in add + remove:
                    if lid not in st.labels:
                        raise ValueError(f"Invalid label: {lid}")
                m["labelIds"] = [l for l in m["labelIds"] if l not in remove]
                m["labelIds"] += [l for l in add if l not in m["labelIds"]]
                return self.reply(200, {"id": m["id"], "threadId": m["threadId"],
                                        "labelIds": m["labelIds"]})
        if rest == ["labels"] and method == "GET":
            return self.reply(200, {"labels": [self.label(l, False) for l in st.labels.values()]})
        if rest == ["labels"] and method == "POST":
            name = data.get("name", "").strip()
            if not name:
                raise ValueError("Invalid label name")
            if any(l["name"].lower() == name.lower() for l in st.labels.values()):
                return self.reply(409, google_error(409, "Label name exists or conflicts",
                                                    "duplicate", "ABORTED"))
            lid = f"Label_{next(st.label_ids)}"
            st.labels[lid] = {"id": lid, "name": name, "type": "user",
                              "messageListVisibility": data.get("messageListVisibility", "show"),
                              "labelListVisibility": data.get("labelListVisibility", "labelShow")}
            return self.reply(200, self.label(st.labels[lid], False))
        if len(rest) == 2 and rest[0] == "labels" and method == "GET":
            label = st.labels.get(rest[1])
            if label is None:
                return self.reply(404, google_error(404, "Requested entity was not found.",
                                                    "notFound", "NOT_FOUND"))
            return self.reply(200, self.label(label, True))
        return self.reply(404, google_error(404, "Not Found", "notFound", "NOT_FOUND"))

    def message(self, m, fmt, wanted):
        body = {"id": m["id"], "threadId": m["threadId"], "labelIds": m["labelIds"],
                "snippet": "", "historyId": "1", "internalDate": m["internalDate"],
                "sizeEstimate": len(m["raw"])}
        if fmt == "raw":
            body["raw"] = b64url(m["raw"])
        elif fmt in ("metadata", "full"):
            wanted = {w.lower() for w in wanted} if fmt == "metadata" and wanted else None
            body["payload"] = {"partId": "", "mimeType": "message/rfc822", "filename": "",
                               "headers": header_list(m["raw"], wanted)}
        elif fmt != "minimal":
            raise ValueError(f"Invalid value at 'format' ({fmt})")
        return body

    def label(self, label, counts):
        out = dict(label)
        if counts:
            ms = [m for m in self.state.messages.values() if label["id"] in m["labelIds"]]
            out["messagesTotal"] = out["threadsTotal"] = len(ms)
            unread = sum(1 for m in ms if "UNREAD" in m["labelIds"])
            out["messagesUnread"] = out["threadsUnread"] = unread
        return out

    # -- control ------------------------------------------------------------
    def control(self, method, parts):
        st = self.state
        data = self.body() if method == "POST" else {}
        with st.lock:
            if parts == ["messages"] and method == "POST":
                mid = st.add_message(base64.b64decode(data["raw_b64"]), data.get("labelIds"))
                return self.reply(200, {"id": mid})
            if parts == ["tokens"]:
                st.tokens = set(data.get("tokens", []))
                st.limits = dict(data.get("limits", {}))
                return self.reply(200, {})
            if parts == ["errors"]:
                st.errors.append({"count": 1, **data})
                return self.reply(200, {})
            if parts == ["page"]:
                st.page_max = int(data["max"])
                return self.reply(200, {})
            if parts == ["state"]:
                return self.reply(200, {
                    "messages": [{"id": m["id"], "labelIds": m["labelIds"],
                                  "size": len(m["raw"])} for m in st.messages.values()],
                    "labels": list(st.labels.values()),
                    "requests": list(st.requests),
                    "sent": [base64.b64encode(r).decode() for r in st.sent]})
        return self.reply(404, {"error": "no such control call"})


class GmailFake:
    """The fake in a thread of the test process (pytest)."""

    def __init__(self, cert_file: str, key_file: str, address: str = "support@example.test",
                 port: int = 0, resolver=None):
        self.state = State(address)
        self.state.resolver = resolver
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.state = self.state  # type: ignore[attr-defined]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_file, key_file)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.url = f"https://localhost:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "GmailFake":
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--address", default="support@example.test")
    p.add_argument("--token", action="append", default=[])
    args = p.parse_args()
    fake = GmailFake(args.cert, args.key, args.address, args.port)
    fake.state.tokens = set(args.token)
    print(f"PORT {fake.port}", flush=True)
    try:
        fake.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
