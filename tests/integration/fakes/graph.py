"""A fake Microsoft Graph (v1.0 mail endpoints), written from Microsoft's
documentation, for the gateway's Graph upstream and sendMail transport.

HTTPS with the suite's private CA (imapbase._certificates). In memory:
users -> folders (well-known names, display names, childFolders) ->
messages (MIME, isRead, categories, receivedDateTime). What it serves:

- GET  /v1.0/users/{u}/mailFolders[/{id|wellKnownName}[/childFolders]]
- GET  /v1.0/users/{u}/mailFolders/{f}/messages  ($filter isRead eq false,
       optionally after `receivedDateTime ge ...`; $orderby receivedDateTime
       (refused with InefficientFilter unless $filter starts with it, as Graph
       does); $select; $top, capped at `max_page`; @odata.nextLink with
       $skiptoken; $expand=singleValueExtendedProperties($filter=id eq
       'Integer 0x0E08') -> PidTagMessageSize as a string, id `Integer 0xe08`)
- GET  /v1.0/users/{u}[/mailFolders/{f}]/messages/{id}  ($select, incl.
       internetMessageHeaders parsed from the MIME)
- GET  /v1.0/users/{u}/messages/{id}/$value   (the MIME)
- PATCH /v1.0/users/{u}/messages/{id}         (isRead, categories)
- POST /v1.0/users/{u}/messages/{id}/move     (destinationId; 201 + message)
- POST /v1.0/users/{u}/sendMail               (text/plain base64 MIME; 202;
       each one recorded with its user and the bearer token it came with)

Ids: every message has an immutable id and a REST id that changes when it
moves; answers use the immutable one when the request says
`Prefer: IdType="ImmutableId"`; both are accepted in paths.
Errors: {"error": {"code", "message"}}; 401 InvalidAuthenticationToken for a
bearer token not accepted; injected errors (e.g. 429 + Retry-After).

Control API for tests (same server, no auth), JSON:
  POST /_fake/tokens      {"accept": ["t1"], "expire_after": {"t1": 3}}
                          (a token whose count runs out is refused from then on)
  POST /_fake/inject      ... "delay": N stalls a matching request N seconds
                          (the lock released) before it fails with `status`
  POST /_fake/folders     {"user", "path": "Inbox/Support"}  -> {"id"}
  POST /_fake/messages    {"user", "folder": "inbox" | path, "mime_b64",
                           "isRead", "categories", "size"(override)} -> {"id"}
  POST /_fake/inject      {"method", "path_contains", "status", "code",
                           "message", "retry_after", "times"}
  GET  /_fake/state       users/messages/sendmail/requests
"""

import base64
import email.parser
import email.policy
import itertools
import json
import re
import ssl
import sys
import tempfile
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

WELL_KNOWN = ["archive", "deleteditems", "drafts", "inbox", "junkemail", "outbox", "sentitems",
              "msgfolderroot"]
DISPLAY = {"inbox": "Inbox", "archive": "Archive", "deleteditems": "Deleted Items",
           "drafts": "Drafts", "junkemail": "Junk Email", "outbox": "Outbox",
           "sentitems": "Sent Items", "msgfolderroot": "Top of Information Store"}
SIZE_TAG = "integer 0x0e08"
_ids = itertools.count(1)


def _new_id(kind: str) -> str:
    # Graph ids are long base64url strings ending in "=".
    raw = f"{kind}-{next(_ids):08d}-mailgate-fake".encode()
    return "AAMk" + base64.urlsafe_b64encode(raw).decode().rstrip("=") + "AAA="


class Message:
    def __init__(self, mime: bytes, folder, received: datetime, is_read=False, categories=None,
                 size=None):
        self.immutable_id = _new_id("imm")
        self.rest_id = _new_id("rest")
        self.mime = mime
        self.folder = folder
        self.received = received
        self.is_read = is_read
        self.categories = list(categories or [])
        self.size = len(mime) if size is None else size
        self.value_downloads = 0

    def headers(self):
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            self.mime, headersonly=True)
        return [{"name": k, "value": re.sub(r"\r?\n[ \t]*", " ", str(v))} for k, v in msg.items()]

    def header(self, name):
        for h in self.headers():
            if h["name"].lower() == name.lower():
                return h["value"]
        return None


class Folder:
    def __init__(self, name, parent, well_known=None):
        self.id = _new_id("fld")
        self.name = name
        self.parent = parent
        self.well_known = well_known


class Mailbox:
    def __init__(self):
        self.folders = []
        root = Folder(DISPLAY["msgfolderroot"], None, "msgfolderroot")
        self.folders.append(root)
        for wk in WELL_KNOWN:
            if wk != "msgfolderroot":
                self.folders.append(Folder(DISPLAY[wk], root, wk))
        self.messages = []

    def folder(self, ref):
        for f in self.folders:
            if f.id == ref or (f.well_known and f.well_known == ref.lower()):
                return f
        return None

    def path_of(self, f):
        parts = []
        while f is not None and f.well_known != "msgfolderroot":
            parts.append(f.name)
            f = f.parent
        return "/".join(reversed(parts))

    def by_path(self, path, create=False):
        f = self.folder(path)
        if f is not None:
            return f
        cur = self.folder("msgfolderroot")
        for part in path.split("/"):
            nxt = next((c for c in self.folders if c.parent is cur and c.name.lower() == part.lower()), None)
            if nxt is None:
                if not create:
                    return None
                nxt = Folder(part, cur)
                self.folders.append(nxt)
            cur = nxt
        return cur

    def message(self, ref):
        return next((m for m in self.messages if ref in (m.immutable_id, m.rest_id)), None)


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.mailboxes = {}
        self.accept = set()
        self.expire_after = {}  # token -> authenticated requests left
        # Optional `token -> bool` consulted for a token not in `accept`
        # (e.g. "did the authorization server issue it?"); `refused` wins.
        self.resolver = None
        self.refused = set()
        self.max_page = 1000
        self.injections = []
        self.sendmail = []
        self.requests = []
        self.clock = datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)

    def mailbox(self, user):
        return self.mailboxes.setdefault(user.lower(), Mailbox())


def _error(status, code, message):
    return status, {"error": {"code": code, "message": message,
                              "innerError": {"date": "2024-05-01T08:00:00",
                                             "request-id": "00000000-0000-0000-0000-000000000000"}}}


def _iso(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGraph/1.0"

    def log_message(self, *args):
        pass

    # -------------------------------------------------------------- plumbing
    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, payload=None, raw=None, ctype="application/json", headers=None):
        data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        self.send_response(status)
        if data or status not in (202, 204):
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def _dispatch(self, method):
        st: State = self.server.state
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        body = self._body()
        if path.startswith("/_fake/"):
            return self._control(method, path, body)
        with st.lock:
            # Authentication first, as Graph does.
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else None
            st.requests.append({"method": method, "path": path, "query": query, "token": token})
            if token is None:
                return self._send(*_error(401, "InvalidAuthenticationToken",
                                          "Access token is empty."))
            known = token in st.accept or (
                st.resolver is not None and token not in st.refused and st.resolver(token))
            if not known:
                return self._send(*_error(401, "InvalidAuthenticationToken",
                                          "Lifetime validation failed, the token is expired."))
            if token in st.expire_after:
                st.expire_after[token] -= 1
                if st.expire_after[token] <= 0:
                    st.accept.discard(token)
                    st.refused.add(token)
                    del st.expire_after[token]
            delay = None
            for inj in st.injections:
                if inj["times"] > 0 and inj["method"] == method and inj["path_contains"] in path:
                    inj["times"] -= 1
                    if inj.get("delay"):
                        delay = inj
                        break
                    headers = {}
                    if inj.get("retry_after") is not None:
                        headers["Retry-After"] = str(inj["retry_after"])
                    status, payload = _error(inj["status"], inj.get("code", "TooManyRequests"),
                                             inj.get("message", "Please retry again later."))
                    return self._send(status, payload, headers=headers)
            if delay is None:
                immutable = 'idtype="immutableid"' in self.headers.get("Prefer", "").lower().replace(" ", "")
                try:
                    status, payload, extra = self._graph(st, method, path, query, body, immutable)
                except BadRequest as e:
                    status, payload, extra = *_error(400, e.code, e.message), {}
        if delay is not None:
            time.sleep(float(delay["delay"]))
            status, payload = _error(delay["status"], delay.get("code", "ServiceUnavailable"),
                                     delay.get("message", "The service is unavailable."))
            return self._send(status, payload)
        if isinstance(payload, (bytes, bytearray)):
            return self._send(status, raw=bytes(payload), ctype=extra.pop("ctype", "text/plain"),
                              headers=extra)
        return self._send(status, payload, headers=extra)

    # ----------------------------------------------------------- the API ---
    def _graph(self, st, method, path, q, body, immutable):
        m = re.fullmatch(r"/v1\.0/users/([^/]+)(/.*)", path)
        if not m:
            return (*_error(400, "BadRequest", f"Resource not found for the segment '{path}'."), {})
        box = st.mailbox(m.group(1))
        rest = m.group(2)
        mid = lambda msg: msg.immutable_id if immutable else msg.rest_id
        base = f"https://{self.headers.get('Host')}/v1.0/users/{m.group(1)}"

        def folder_json(f, sel):
            full = {"id": f.id, "displayName": f.name,
                    "parentFolderId": f.parent.id if f.parent else None,
                    "childFolderCount": sum(1 for c in box.folders if c.parent is f),
                    "unreadItemCount": sum(1 for x in box.messages if x.folder is f and not x.is_read),
                    "totalItemCount": sum(1 for x in box.messages if x.folder is f),
                    "isHidden": False}
            return _select(full, sel)

        def message_json(msg, sel, expand):
            sender = msg.header("From") or ""
            full = {"id": mid(msg), "receivedDateTime": _iso(msg.received), "isRead": msg.is_read,
                    "categories": msg.categories, "subject": msg.header("Subject"),
                    "internetMessageId": msg.header("Message-ID"),
                    "parentFolderId": msg.folder.id,
                    "from": {"emailAddress": {"name": sender, "address": sender}}}
            out = _select(full, sel)
            if sel and "internetmessageheaders" in [s.lower() for s in sel]:
                out["internetMessageHeaders"] = msg.headers()
            if expand:
                out["singleValueExtendedProperties"] = [{"id": "Integer 0xe08", "value": str(msg.size)}]
            return out

        sel = [s.strip() for s in q["$select"].split(",")] if "$select" in q else None
        # --- folders
        if method == "GET" and rest == "/mailFolders":
            return self._folders(box, box.folder("msgfolderroot"), q, sel, folder_json, base + "/mailFolders")
        fm = re.fullmatch(r"/mailFolders/([^/]+)(/childFolders|/messages)?", rest)
        if method == "GET" and fm:
            f = box.folder(fm.group(1))
            if f is None:
                return (*_error(404, "ErrorItemNotFound", "The specified object was not found in the store."), {})
            if fm.group(2) is None:
                return 200, folder_json(f, sel), {}
            if fm.group(2) == "/childFolders":
                return self._folders(box, f, q, sel, folder_json, f"{base}/mailFolders/{fm.group(1)}/childFolders")
            return self._messages(box, f, q, sel, message_json, f"{base}/mailFolders/{fm.group(1)}/messages")
        # --- one message
        mm = re.fullmatch(r"(?:/mailFolders/[^/]+)?/messages/([^/]+)(/\$value|/move)?", rest)
        if mm:
            msg = box.message(mm.group(1))
            if msg is None:
                return (*_error(404, "ErrorItemNotFound", "The specified object was not found in the store."), {})
            if method == "GET" and mm.group(2) == "/$value":
                msg.value_downloads += 1
                return 200, msg.mime, {"ctype": "text/plain"}
            if method == "GET" and mm.group(2) is None:
                expand = "singleValueExtendedProperties" in q.get("$expand", "")
                return 200, message_json(msg, sel, expand), {}
            if method == "PATCH" and mm.group(2) is None:
                changes = json.loads(body or b"{}")
                if "isRead" in changes:
                    msg.is_read = bool(changes["isRead"])
                if "categories" in changes:
                    msg.categories = list(changes["categories"])
                return 200, message_json(msg, None, False), {}
            if method == "POST" and mm.group(2) == "/move":
                dest = json.loads(body or b"{}").get("destinationId")
                f = box.folder(dest or "")
                if f is None:
                    return (*_error(400, "ErrorInvalidIdMalformed", "Id is malformed."), {})
                msg.folder = f
                msg.rest_id = _new_id("rest")  # REST ids change on move; immutable ids do not
                return 201, message_json(msg, None, False), {}
        if method == "POST" and rest == "/sendMail":
            ctype = self.headers.get("Content-Type", "")
            auth = self.headers.get("Authorization", "")
            entry = {"user": m.group(1), "content_type": ctype, "body": body.decode("latin-1"),
                     "token": auth[7:]}
            if not ctype.lower().startswith("text/plain"):
                st.sendmail.append(entry)
                return (*_error(400, "ErrorInvalidRequest", "JSON sendMail is not served by this fake."), {})
            try:
                mime = base64.b64decode(body, validate=True)
            except Exception:
                return (*_error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."), {})
            entry["mime_b64"] = base64.b64encode(mime).decode()
            st.sendmail.append(entry)
            sent = Message(mime, box.folder("sentitems"), st.clock, is_read=True)
            box.messages.append(sent)
            return 202, None, {}
        return (*_error(400, "BadRequest", f"Unsupported request {method} {rest}"), {})

    def _page(self, items, q, link):
        top = int(q.get("$top", "10"))
        top = max(1, min(top, self.server.state.max_page))
        skip = int(q.get("$skiptoken", "0") or 0)
        chunk = items[skip:skip + top]
        out = {"@odata.context": link}
        if skip + top < len(items):
            keep = {k: v for k, v in q.items() if k != "$skiptoken"}
            keep["$top"] = str(top)
            keep["$skiptoken"] = str(skip + top)
            out["@odata.nextLink"] = link + "?" + urllib.parse.urlencode(keep, quote_via=urllib.parse.quote)
        return out, chunk

    def _folders(self, box, parent, q, sel, folder_json, link):
        kids = [f for f in box.folders if f.parent is parent]
        out, chunk = self._page(kids, q, link)
        out["value"] = [folder_json(f, sel) for f in chunk]
        return 200, out, {}

    def _messages(self, box, folder, q, sel, message_json, link):
        items = [x for x in box.messages if x.folder is folder]
        flt = q.get("$filter", "").strip()
        order = q.get("$orderby", "").strip()
        if order:
            prop = order.split()[0]
            if flt and not flt.startswith(prop):
                raise BadRequest("InefficientFilter", "The restriction or sort order is too complex for this operation.")
        for clause in [c.strip() for c in re.split(r"\s+and\s+", flt) if c.strip()]:
            if clause == "isRead eq false":
                items = [x for x in items if not x.is_read]
            elif clause == "isRead eq true":
                items = [x for x in items if x.is_read]
            elif (mt := re.fullmatch(r"receivedDateTime ge (\S+)", clause)):
                since = datetime.fromisoformat(mt.group(1).replace("Z", "+00:00"))
                items = [x for x in items if x.received >= since]
            else:
                raise BadRequest("ErrorInvalidUrlQueryFilter", f"Unsupported filter: {clause}")
        # Graph's default order for messages is receivedDateTime desc.
        desc = not order or order.endswith("desc")
        items.sort(key=lambda x: x.received, reverse=desc)
        expand = q.get("$expand", "")
        want_size = False
        if expand:
            me = re.fullmatch(r"singleValueExtendedProperties\(\$filter=id eq '([^']+)'\)", expand)
            if not me:
                raise BadRequest("BadRequest", f"Unsupported $expand {expand}")
            want_size = me.group(1).lower().replace("0x0e08", "0xe08") == "integer 0xe08"
        out, chunk = self._page(items, q, link)
        out["value"] = [message_json(x, sel, want_size) for x in chunk]
        return 200, out, {}

    # ----------------------------------------------------------- control ---
    def _control(self, method, path, body):
        st: State = self.server.state
        data = json.loads(body or b"{}")
        with st.lock:
            if method == "POST" and path == "/_fake/tokens":
                st.accept = set(data.get("accept", []))
                st.expire_after = dict(data.get("expire_after", {}))
                return self._send(200, {})
            if method == "POST" and path == "/_fake/config":
                st.max_page = int(data.get("max_page", st.max_page))
                return self._send(200, {})
            if method == "POST" and path == "/_fake/folders":
                f = st.mailbox(data["user"]).by_path(data["path"], create=True)
                return self._send(200, {"id": f.id})
            if method == "POST" and path == "/_fake/messages":
                box = st.mailbox(data["user"])
                f = box.by_path(data.get("folder", "inbox"), create=True)
                st.clock += timedelta(minutes=1)
                msg = Message(base64.b64decode(data["mime_b64"]), f, st.clock,
                              is_read=data.get("isRead", False), categories=data.get("categories"),
                              size=data.get("size"))
                box.messages.append(msg)
                return self._send(200, {"id": msg.immutable_id, "rest_id": msg.rest_id})
            if method == "POST" and path == "/_fake/inject":
                st.injections.append({"method": data.get("method", "GET"),
                                      "path_contains": data.get("path_contains", ""),
                                      "status": int(data.get("status", 429)),
                                      "code": data.get("code", "TooManyRequests"),
                                      "message": data.get("message", "Please retry again later."),
                                      "retry_after": data.get("retry_after"),
                                      "delay": data.get("delay"),
                                      "times": int(data.get("times", 1))})
                return self._send(200, {})
            if method == "POST" and path == "/_fake/clear_requests":
                st.requests = []
                return self._send(200, {})
            if method == "GET" and path == "/_fake/state":
                users = {}
                for user, box in st.mailboxes.items():
                    users[user] = {"messages": [{
                        "id": x.immutable_id, "rest_id": x.rest_id, "folder": box.path_of(x.folder),
                        "isRead": x.is_read, "categories": x.categories, "size": x.size,
                        "value_downloads": x.value_downloads,
                        "subject": x.header("Subject")} for x in box.messages]}
                return self._send(200, {"users": users, "sendmail": st.sendmail,
                                        "requests": st.requests})
        return self._send(404, {"error": "unknown control path"})


class BadRequest(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


def _select(full: dict, sel):
    if not sel:
        return full
    lower = {s.lower() for s in sel} | {"id"}
    return {k: v for k, v in full.items() if k.lower() in lower}


class FakeGraph:
    """The fake on 127.0.0.1:<port> in a background thread."""

    def __init__(self, cert_pem: bytes, key_pem: bytes, port: int = 0, resolver=None):
        self._dir = tempfile.mkdtemp(prefix="mailgate-fake-graph-")
        cert, key = Path(self._dir, "cert.pem"), Path(self._dir, "key.pem")
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.server.state = State()
        self.server.state.resolver = resolver
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.base = f"https://localhost:{self.port}/v1.0"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def state(self) -> State:
        return self.server.state

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def main():
    """`graph.py DIR`: writes DIR/ca.pem, serves, prints `PORT <n>`, runs
    until stdin closes (so a test that dies takes the fake with it)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from imapbase import _certificates  # the suite's private CA
    certs = _certificates()
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    (out / "ca.pem").write_bytes(certs["ca.pem"])
    fake = FakeGraph(certs["cert.pem"], certs["key.pem"])
    print(f"PORT {fake.port}", flush=True)
    sys.stdin.read()
    fake.stop()


if __name__ == "__main__":
    main()
