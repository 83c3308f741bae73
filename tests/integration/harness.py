"""Run a real mailgate binary for a test: config, process, HTTP and SMTP helpers.

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

# Gateways currently running (for attaching logs to failure reports).
ACTIVE: "set[Gateway]" = set()

START_TIMEOUT = float(os.environ.get("MAILGATE_START_TIMEOUT", "60"))
STOP_TIMEOUT = float(os.environ.get("MAILGATE_STOP_TIMEOUT", "60"))

TOKEN_ENV = "MAILGATE_TEST_TOKEN"
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(names, avoid=()) -> dict:
    """A distinct free port per name, none of them in `avoid`."""
    out: dict = {}
    while len(out) < len(names):
        p = free_port()
        if p not in out.values() and p not in avoid:
            out[names[len(out)]] = p
    return out


# --------------------------------------------------------------- TOML ---

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table, e.g. [mailbox.notify] acknowledgement = {...}
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(cfg: dict) -> str:
    out = []
    for section, body in cfg.items():
        if isinstance(body, list):
            for table in body:
                out.append(f"[[{section}]]")
                subtables = {}
                for k, v in table.items():
                    if isinstance(v, dict):
                        subtables[k] = v  # e.g. [mailbox.upstream], written after the keys
                        continue
                    out.append(f"{k} = {_toml_value(v)}")
                out.append("")
                for k, sub in subtables.items():
                    out.append(f"[{section}.{k}]")
                    for kk, vv in sub.items():
                        out.append(f"{kk} = {_toml_value(vv)}")
                    out.append("")
        else:
            out.append(f"[{section}]")
            for k, v in body.items():
                out.append(f"{k} = {_toml_value(v)}")
            out.append("")
    return "\n".join(out)


def merge(base: dict, over: dict) -> dict:
    res = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(res.get(k), dict):
            res[k] = merge(res[k], v)
        else:
            res[k] = copy.deepcopy(v)
    return res


SUPPORT = {
    "name": "support",
    "addresses": ["support@example.test"],
    "queue": "Support",
    "default": True,
}
SALES = {
    "name": "sales",
    "addresses": ["sales@example.test"],
    "queue": "Sales",
    "default": False,
}


def base_config(workdir: Path, ports: dict) -> dict:
    return {
        "server": {
            "hostname": "localhost",
            "data_dir": str(workdir / "data"),
            "domains": ["example.test"],
        },
        "smtp": {
            "listen": [f"127.0.0.1:{ports['smtp']}"],
            "listen_tls": [f"127.0.0.1:{ports['smtps']}"],
            "bare_lf": "normalize",
            # The suite opens many connections from 127.0.0.1.
            "connections_per_minute_per_ip": 1000000,
        },
        "limits": {"max_message_size": 1048576},
        "tls": {"dev_cert_dir": str(workdir / "certs")},
        "http": {"listen": f"127.0.0.1:{ports['http']}", "api_token_env": TOKEN_ENV},
        "tickets": {"tag": "[MG#{number}]", "first_number": 1000},
        "mailbox": [dict(SUPPORT), dict(SALES)],
    }


# ------------------------------------------------------------ replies ---

MSG_PART_RE = re.compile(r"^message <?([^\s<>;]+?)>? in ticket <?#?(\d+)>?$")
REJ_PART_RE = re.compile(r"^recorded as rejection <?([^\s<>;]+?)>? \(([a-z_]+)\)$")
# A duplicate names nothing: which earlier record it matched is not the
# sender's business (it would confirm that a Message-ID was seen).
DUP_RE = re.compile(r"^duplicate, already recorded$")


@dataclass
class Outcome:
    kind: str  # "message" | "rejection" | "duplicate"
    id: str | None
    ticket: int | None = None
    reason: str | None = None


@dataclass
class Reply:
    code: int
    text: str  # after the code, lines joined with "\n"
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def enhanced(self) -> str:
        return self.text.split(" ", 1)[0]

    def __str__(self):
        return f"{self.code} {self.text}"

    # single-outcome conveniences ----------------------------------------
    def one(self, kind: str) -> Outcome:
        assert self.code == 250, f"expected 250 after DATA, got: {self}"
        assert len(self.outcomes) == 1, f"expected one outcome in the reply, got: {self}"
        o = self.outcomes[0]
        assert o.kind == kind, f"expected a {kind} outcome, got: {self}"
        return o

    def message(self) -> Outcome:
        return self.one("message")

    def rejection(self) -> Outcome:
        return self.one("rejection")


def parse_data_reply(code: int, text: str) -> Reply:
    """Parse the final reply to DATA as the spec defines it.

    250 2.0.0 Ok: message <MSGID> in ticket <NUMBER>[; ...]
    250 2.0.0 Ok: recorded as rejection <ID> (<reason>)
    250 2.0.0 Ok: duplicate, already recorded
    """
    reply = Reply(code, text)
    if code != 250:
        return reply
    m = re.match(r"^2\.0\.0 Ok: (.*)$", text.strip(), re.S)
    if not m:
        return reply
    for part in m.group(1).split("; "):
        part = part.strip()
        if mm := MSG_PART_RE.match(part):
            reply.outcomes.append(Outcome("message", mm.group(1), ticket=int(mm.group(2))))
        elif mm := REJ_PART_RE.match(part):
            reply.outcomes.append(Outcome("rejection", mm.group(1), reason=mm.group(2)))
        elif DUP_RE.match(part):
            reply.outcomes.append(Outcome("duplicate", None))
        else:
            reply.outcomes.append(Outcome("unknown", part))
    return reply


# ---------------------------------------------------------- raw SMTP ---

class RawSMTP:
    """A byte-level SMTP client for protocol edge cases."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 30.0, tls_ctx=None,
                 server_hostname: str = "localhost"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if tls_ctx is not None:
            self.sock = tls_ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _readline(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed by server (pending: {self.buf!r})")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def reply(self) -> tuple[int, str]:
        """One (possibly multi-line) reply: (code, text lines joined by \\n)."""
        lines = []
        while True:
            line = self._readline()
            if len(line) < 3 or not line[:3].isdigit():
                raise AssertionError(f"malformed reply line {line!r}")
            lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def cmd(self, line: str | bytes) -> tuple[int, str]:
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.reply()

    def expect(self, line: str | bytes, code: int) -> str:
        got, text = self.cmd(line)
        assert got == code, f"{line!r}: expected {code}, got {got} {text}"
        return text

    def replies_until_close(self, limit: int = 50) -> list[tuple[int, str]]:
        out = []
        for _ in range(limit):
            try:
                out.append(self.reply())
            except (EOFError, ConnectionResetError):
                break
        return out

    def closed_by_server(self) -> bool:
        """True when the server has closed the connection (reads EOF/reset)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except (socket.timeout, TimeoutError):
            return False
        except ssl.SSLError:
            return True

    def starttls(self, ctx: ssl.SSLContext, server_hostname: str = "localhost"):
        assert not self.buf, f"unread data before TLS: {self.buf!r}"
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)


# ------------------------------------------------------------ gateway ---

class HTTPResult:
    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"HTTP {self.status}: body is not JSON: {self.body[:300]!r}") from e

    def __repr__(self):
        return f"<HTTP {self.status} {self.body[:200]!r}>"


class Gateway:
    def __init__(self, binary: str, workdir: Path, config_overrides: dict | None = None,
                 env: dict | None = None, name: str = "mailgate"):
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.ports = free_ports(["smtp", "smtps", "http"])
        self.config = merge(base_config(self.workdir, self.ports), config_overrides or {})
        self.config_path = self.workdir / "mailgate.toml"
        self.config_path.write_text(to_toml(self.config))
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        # True: stderr goes to a pipe (self.pipe, read end) instead of a file.
        self.stderr_pipe = False
        self.pipe = None
        self.starts = 0
        self._log_path = None

    # -- ports, paths --------------------------------------------------------
    @property
    def smtp_port(self) -> int:
        return self.ports["smtp"]

    @property
    def tls_port(self) -> int:
        return self.ports["smtps"]

    @property
    def http_port(self) -> int:
        return self.ports["http"]

    @property
    def cert_path(self) -> Path:
        return Path(self.config["tls"]["dev_cert_dir"]) / "dev-cert.pem"

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.cert_path))
        return ctx

    @property
    def log_path(self) -> Path:
        return self._log_path

    # -- process ---------------------------------------------------------------
    def _new_ports(self):
        """Pick new free ports (another process took one) and rewrite the config."""
        old = dict(self.ports)
        self.ports = free_ports(list(self.ports), avoid=set(old.values()))
        remap = {str(old[k]): str(self.ports[k]) for k in self.ports}
        # One pass: chained str.replace could map two listeners onto one port.
        text = re.sub(r"127\.0\.0\.1:(\d+)",
                      lambda m: f"127.0.0.1:{remap.get(m.group(1), m.group(1))}",
                      self.config_path.read_text())
        self.config_path.write_text(text)
        self.config["smtp"]["listen"] = [f"127.0.0.1:{self.ports['smtp']}"]
        self.config["smtp"]["listen_tls"] = [f"127.0.0.1:{self.ports['smtps']}"]
        self.config["http"]["listen"] = f"127.0.0.1:{self.ports['http']}"

    def start(self, wait: bool = True):
        for attempt in range(3):
            self._start_once()
            if not wait:
                return self
            try:
                self.wait_ready()
                return self
            except AssertionError:
                # A free port chosen earlier may have been taken by another process.
                if self.proc.poll() is not None and "in use" in self.log_text() and attempt < 2:
                    self._new_ports()
                    continue
                raise
        return self

    def _start_once(self):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self._log_path = self.workdir / f"stderr.{self.starts}.log"
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
        env.setdefault("NO_COLOR", "1")
        env.update(self.extra_env)
        if self.stderr_pipe:
            # stderr is a pipe the test reads (or does not) from self.pipe.
            read_end, write_end = os.pipe()
            self.pipe = os.fdopen(read_end, "rb", buffering=0)
            err = os.fdopen(write_end, "wb")
        else:
            err = open(self._log_path, "wb")
        with open(self.workdir / f"stdout.{self.starts}.log", "wb") as out, err:
            self.proc = subprocess.Popen(
                [self.binary, "serve", "--config", str(self.config_path)],
                cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        ACTIVE.add(self)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = START_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"mailgate exited with {self.proc.returncode} during start-up:\n{self.log_tail()}")
            try:
                r = self.http("GET", "/healthz", timeout=2)
                if r.status == 200:
                    # and the SMTP listener answers; the probe's session is
                    # over before the test begins (it would count against
                    # the connection caps a test sets).
                    with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=5) as c:
                        c.recv(4096)
                        c.sendall(b"QUIT\r\n")
                        while c.recv(4096):
                            pass
                    self._wait_no_sessions(deadline)
                    return
                last = r
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise AssertionError(
            f"mailgate not ready after {timeout}s (last /healthz: {last!r}):\n{self.log_tail()}")

    def _wait_no_sessions(self, deadline: float):
        while time.monotonic() < deadline:
            if self.metrics().get("mailgate_smtp_sessions_active") == 0:
                return
            time.sleep(0.01)
        raise AssertionError(f"the readiness probe's SMTP session did not end:\n{self.log_tail()}")

    def stop(self, sig=signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """Signal the process and wait; returns its exit code (None if it was not running)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                ACTIVE.discard(self)
                raise AssertionError(
                    f"mailgate did not exit within {timeout}s of signal {sig!r}:\n{self.log_tail()}")
        ACTIVE.discard(self)
        return self.proc.returncode

    def kill(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        rc = self.stop()
        self.start()
        return rc

    def log_text(self, which: int | None = None) -> str:
        path = self.workdir / f"stderr.{which or self.starts}.log"
        try:
            return ANSI_RE.sub("", path.read_text(errors="replace"))
        except FileNotFoundError:
            return ""

    def wait_log(self, pred, timeout: float = 20) -> tuple[list[str], str]:
        """Lines of the current stderr log matching pred (a substring or a
        function of a line) and the whole log, waiting up to `timeout` for
        one: `serve` writes its log from a thread of its own, so a line can
        land a moment after what it tells of is visible from outside."""
        match = pred if callable(pred) else (lambda line: pred in line)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            lines = [ln for ln in text.splitlines() if match(ln)]
            if lines or time.monotonic() > deadline:
                return lines, text
            time.sleep(0.05)

    def log_tail(self, n: int = 40) -> str:
        lines = self.log_text().splitlines()
        return "\n".join(lines[-n:]) if lines else "(empty stderr)"

    # -- HTTP -------------------------------------------------------------------
    def http(self, method: str, path: str, token: str | None = None, headers: dict | None = None,
             timeout: float = 60, body: bytes | None = None) -> HTTPResult:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            h = dict(headers or {})
            if token is not None:
                h["Authorization"] = f"Bearer {token}"
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return HTTPResult(r.status, r.headers, r.read())
        finally:
            conn.close()

    token: str | None = None

    def http_json(self, method: str, path: str, obj=None, timeout: float = 120) -> HTTPResult:
        """A request with a JSON body (e.g. POST /api/v1/mailboxes/{name}/sync)."""
        body = None if obj is None else json.dumps(obj).encode()
        return self.http(method, path, token=self.token, timeout=timeout, body=body,
                         headers={"Content-Type": "application/json"} if body is not None else None)

    def api(self, path: str, params: dict | None = None, expect: int = 200):
        if params:
            path = f"{path}?{urllib.parse.urlencode(params)}"
        r = self.http("GET", path, token=self.token)
        assert r.status == expect, f"GET {path}: expected {expect}, got {r.status} {r.body[:500]!r}"
        return r.json()

    def paged(self, path: str, key: str, params: dict | None = None, limit: int = 500):
        cursor = None
        seen_cursors = set()
        while True:
            q = dict(params or {})
            q["limit"] = str(limit)
            if cursor:
                q["cursor"] = cursor
            body = self.api(path, q)
            assert key in body and "next" in body, f"{path}: missing {key!r}/'next' in {body!r}"[:500]
            yield from body[key]
            cursor = body["next"]
            if not cursor:
                return
            assert cursor not in seen_cursors, f"{path}: cursor {cursor!r} repeats"
            seen_cursors.add(cursor)

    def tickets(self, **params) -> list[dict]:
        return list(self.paged("/api/v1/tickets", "tickets", params))

    def rejections(self, **params) -> list[dict]:
        return list(self.paged("/api/v1/rejections", "rejections", params))

    def ticket(self, tid) -> dict:
        return self.api(f"/api/v1/tickets/{tid}")

    def message(self, mid) -> dict:
        return self.api(f"/api/v1/messages/{mid}")

    def rejection(self, rid) -> dict:
        return self.api(f"/api/v1/rejections/{rid}")

    def raw(self, kind: str, id_) -> HTTPResult:
        return self.http("GET", f"/api/v1/{kind}/{id_}/raw", token=self.token)

    def store_counts(self) -> tuple[int, int]:
        """(ticket messages, rejection records) as the API lists them."""
        msgs = sum(t["message_count"] for t in self.tickets())
        return msgs, len(self.rejections())

    def metrics(self) -> "Metrics":
        r = self.http("GET", "/metrics")
        assert r.status == 200, f"/metrics: {r}"
        return Metrics(r.body.decode())

    # -- SMTP -------------------------------------------------------------------
    def smtp(self, host: str = "127.0.0.1", ehlo: bool = True, timeout: float = 60) -> smtplib.SMTP:
        s = smtplib.SMTP(host, self.smtp_port, local_hostname="client.test", timeout=timeout)
        if ehlo:
            code, _ = s.ehlo()
            assert code == 250
        return s

    def raw_smtp(self, timeout: float = 30) -> RawSMTP:
        r = RawSMTP(self.smtp_port, timeout=timeout)
        code, text = r.reply()
        assert code == 220, f"greeting: {code} {text}"
        return r

    def send(self, msg: bytes, mail_from: str = "alice@client.test",
             rcpts=("support@example.test",), mail_options=(), smtp: smtplib.SMTP | None = None) -> Reply:
        """MAIL/RCPT/DATA on a (new or given) connection; returns the parsed DATA reply."""
        own = smtp is None
        s = smtp or self.smtp()
        try:
            code, text = s.mail(mail_from, list(mail_options))
            assert code == 250, f"MAIL FROM:<{mail_from}>: {code} {text!r}"
            for r in rcpts:
                code, text = s.rcpt(r)
                assert code in (250, 251), f"RCPT TO:<{r}>: {code} {text!r}"
            code, text = s.data(msg)
            return parse_data_reply(code, text.decode("utf-8", "replace"))
        finally:
            if own:
                try:
                    s.quit()
                except (smtplib.SMTPException, OSError):
                    s.close()

    # -- convenience: resolve a reply --------------------------------------
    def stored(self, reply: Reply) -> tuple[dict, dict]:
        """For a reply naming one stored message: (message JSON, ticket JSON)."""
        o = reply.message()
        r = self.http("GET", f"/api/v1/messages/{o.id}", token=self.token)
        assert r.status == 200, (
            f"the 250 reply named message {o.id!r}, but GET /api/v1/messages/{o.id} gave "
            f"{r.status} {r.body[:200]!r} (the id in the reply must be the API message id)")
        m = r.json()
        t = self.ticket(m["ticket_id"])
        assert t["number"] == o.ticket, f"reply said ticket {o.ticket}, API ticket is {t['number']}"
        return m, t

    def __hash__(self):
        return id(self)


# ------------------------------------------------------------ metrics ---

_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    def __init__(self, text: str):
        self.text = text
        self.samples: list[tuple[str, dict, float]] = []
        self.types: dict[str, str] = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                parts = line.split()
                if len(parts) >= 4:
                    self.types[parts[2]] = parts[3]
                continue
            if not line or line.startswith("#"):
                continue
            m = _SAMPLE_RE.match(line)
            if not m:
                continue
            labels = dict(_LABEL_RE.findall(m.group(3) or ""))
            self.samples.append((m.group(1), labels, float(m.group(4))))

    def has(self, name: str) -> bool:
        return any(n == name for n, _, _ in self.samples) or name in self.types

    def get(self, name: str, **labels) -> float:
        """Sum of samples of that name whose labels include `labels` (0 if none)."""
        total = 0.0
        for n, l, v in self.samples:
            if n == name and all(l.get(k) == str(val) for k, val in labels.items()):
                total += v
        return total

    def find(self, name: str) -> list[tuple[dict, float]]:
        return [(l, v) for n, l, v in self.samples if n == name]
