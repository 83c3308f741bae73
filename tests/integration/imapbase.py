"""What every private upstream IMAP server of the tests has in common.

Dovecot (dovecot.py), Courier-IMAP (courier.py) and Cyrus (cyrus.py) are
started by the tests themselves on loopback ports, each with its own config
under a temp dir, all with a server certificate for localhost / 127.0.0.1
signed by one private CA made here (clients verify it through `ca_file`).
They expose one test-facing interface, `ImapServer`:

    start() / stop()            the process
    name, separator, has_move   "dovecot" / "courier" / "cyrus", "." or "/",
                                whether the server announces MOVE
    imap_port, imaps_port       STARTTLS (and plain) port, implicit-TLS port
    ca_file, user, password     what a client needs
    folder("INBOX", "support")  a folder name with the server's separator
    add_user() -> Account       a fresh account on the running server
    create_folder, folders, save, append, deliver, flags, message_ids,
    count, add_flags, imap()    the mail of one user (default: `user`)
    logins(), auth_failures()   counted from the server's own log
    log_tail()                  for failure messages

The generic implementations here speak IMAP (imaplib) as that user; Dovecot
overrides them with doveadm. An `Account` is one user of a running server
with the same interface, so that one server process can serve many tests,
each with a mailbox of its own.
"""

from __future__ import annotations

import functools
import imaplib
import itertools
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "alice"
PASSWORD = "s3cret-Pass"
WRONG_PASSWORD = "not-the-password"

# Running servers by listening port (to find the server of an upstream config).
_BY_PORT: dict[int, "ImapServer"] = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = _free_port()
        if p not in ports:
            ports.append(p)
    return ports


# ---------------------------------------------------------- certificates ---

_CERTS: dict[str, bytes] = {}


def _certificates() -> dict[str, bytes]:
    """A CA and a server certificate for localhost / 127.0.0.1 signed by it
    (made once per test session with the openssl command line):
    ca.pem, cert.pem, key.pem."""
    if _CERTS:
        return _CERTS
    work = Path(tempfile.mkdtemp(prefix="mailgate-test-ca-"))
    try:
        def ossl(*args):
            r = subprocess.run(["openssl", *args], cwd=work, capture_output=True, text=True,
                               timeout=60, stdin=subprocess.DEVNULL)
            assert r.returncode == 0, f"openssl {' '.join(args)} failed:\n{r.stdout}{r.stderr}"

        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        ossl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "3650",
             "-subj", "/CN=mailgate test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        ossl("req", *ec, "-keyout", "key.pem", "-out", "server.csr", "-subj", "/CN=localhost")
        (work / "ext.cnf").write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n")
        ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "cert.pem", "-days", "3650", "-extfile", "ext.cnf")
        for name in ("ca.pem", "cert.pem", "key.pem"):
            _CERTS[name] = (work / name).read_bytes()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _CERTS


# ------------------------------------------------------------ interface ---

_FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")
_UID_RE = re.compile(rb"UID (\d+)")
_user_seq = itertools.count(1)


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapServer:
    """One private IMAP server. Subclasses set `name`, `separator`,
    `has_move`, start/stop the process and add users; the mail helpers
    here work over IMAP as `user`."""

    name = "imap"
    separator = "."
    has_move = True

    def __init__(self):
        self.root: Path | None = None
        self.user = USER
        self.password = PASSWORD
        self.imap_port = self.imaps_port = 0

    # -- to be provided --------------------------------------------------------
    def start(self) -> "ImapServer":
        raise NotImplementedError

    def stop(self):
        raise NotImplementedError

    def _create_user(self, user: str):
        raise NotImplementedError

    def log(self) -> str:
        return ""

    def logins(self, user: str | None = None) -> int:
        """Successful logins (of `user`, or of anyone)."""
        return 0

    def auth_failures(self, user: str | None = None) -> int:
        """Logins refused for a wrong password."""
        return 0

    # -- common ----------------------------------------------------------------
    @property
    def ca_file(self) -> str:
        return str(self.root / "ca.pem")

    def folder(self, *parts: str) -> str:
        """A folder name with this server's separator: folder("INBOX", "support")."""
        return self.separator.join(parts)

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def _register(self, *ports: int):
        for p in ports:
            if p:
                _BY_PORT[p] = self

    def _unregister(self):
        for p, s in list(_BY_PORT.items()):
            if s is self:
                del _BY_PORT[p]

    def _write_certificates(self, root: Path):
        for name, data in _certificates().items():
            (root / name).write_bytes(data)
        (root / "key.pem").chmod(0o600)

    def add_user(self, prefix: str = "user") -> "Account":
        """A new account (same password) with an empty INBOX."""
        user = f"{prefix}{next(_user_seq)}"
        self._create_user(user)
        acc = Account(self, user)
        acc.count("INBOX")  # the INBOX exists (and logging in works)
        return acc

    # -- IMAP as a user ----------------------------------------------------------
    def imap(self, user: str | None = None) -> imaplib.IMAP4:
        """A logged-in session on the plain port (each server here allows
        plain-text LOGIN on loopback)."""
        c = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=120)
        # imaplib writes a literal and its CRLF separately: without this, each
        # APPEND waits for a delayed ACK (~40 ms).
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.login(user or self.user, self.password)
        return c

    def _session(self, user, fn):
        c = self.imap(user)
        try:
            return fn(c)
        finally:
            try:
                c.logout()
            except (imaplib.IMAP4.error, OSError):
                pass

    @staticmethod
    def _ok(typ, data, what):
        assert typ == "OK", f"{what}: {typ} {data}"
        return data

    def _examine(self, c, folder: str) -> int:
        data = self._ok(*c.select(_quote(folder), readonly=True), f"EXAMINE {folder}")
        return int(data[0] or 0)

    def create_folder(self, name: str, user: str | None = None):
        self._session(user, lambda c: self._ok(*c.create(_quote(name)), f"CREATE {name}"))

    def folders(self, user: str | None = None) -> list[str]:
        def run(c):
            out = []
            for line in self._ok(*c.list(), "LIST"):
                if not isinstance(line, bytes):
                    continue
                m = re.match(rb'\(([^)]*)\) (?:"[^"]*"|NIL) (.*)$', line)
                assert m, line
                name = m.group(2).decode()
                if name.startswith('"') and name.endswith('"'):
                    name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
                if b"\\Noselect" not in m.group(1) and b"\\NonExistent" not in m.group(1):
                    out.append(name)
            return out
        return self._session(user, run)

    def _fetch(self, folder: str, items: str, user: str | None):
        """[(uid, flags bytes or None, literal bytes or None)] of every message."""
        def run(c):
            if self._examine(c, folder) == 0:
                return []
            data = self._ok(*c.uid("FETCH", "1:*", items), f"FETCH {folder}")
            rows = []
            for d in data:
                head, lit = (d[0], d[1]) if isinstance(d, tuple) else (d, None)
                if not isinstance(head, bytes):
                    continue
                m = _UID_RE.search(head)
                if not m:
                    continue
                f = _FLAGS_RE.search(head)
                rows.append((int(m.group(1)), f.group(1) if f else None, lit))
            return rows
        return self._session(user, run)

    def flags(self, folder: str = "INBOX", user: str | None = None) -> list[tuple[int, frozenset]]:
        """(uid, flags without \\Recent) of every message in a folder, by uid."""
        rows = []
        for uid, flags, _ in self._fetch(folder, "(FLAGS)", user):
            # \Recent depends on which session saw the message first (and Cyrus
            # reports it even to EXAMINE): not a fact about the message.
            fs = frozenset(f for f in (flags or b"").decode().split() if f != "\\Recent")
            rows.append((uid, fs))
        rows.sort(key=lambda r: r[0])
        return rows

    def message_ids(self, folder: str = "INBOX", user: str | None = None) -> dict[int, str]:
        """uid -> Message-ID (without <>, "" when none)."""
        res = {}
        for uid, _, lit in self._fetch(folder, "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])", user):
            m = re.search(rb"(?im)^message-id:\s*(.*?)\s*$", lit or b"")
            res[uid] = m.group(1).decode("utf-8", "replace").strip("<>") if m else ""
        return res

    def count(self, folder: str = "INBOX", user: str | None = None) -> int:
        return self._session(user, lambda c: self._examine(c, folder))

    def add_flags(self, folder: str, uid: int | str, flags: str, user: str | None = None):
        def run(c):
            self._ok(*c.select(_quote(folder)), f"SELECT {folder}")
            self._ok(*c.uid("STORE", str(uid), "+FLAGS", f"({flags})"), "STORE")
        self._session(user, run)

    def append(self, folder: str, messages, flags: str = "", user: str | None = None) -> list[int]:
        """APPENDs many messages on one IMAP connection; returns their UIDs."""
        def run(c):
            uids = []
            for raw in messages:
                typ, data = c.append(_quote(folder), f"({flags})" if flags else None, None, raw)
                text = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
                assert typ == "OK", f"APPEND to {folder} refused: {typ} {text}"
                m = re.search(r"APPENDUID \d+ (\d+)", text)
                assert m, f"no APPENDUID in {text!r}"
                uids.append(int(m.group(1)))
            return uids
        return self._session(user, run)

    def save(self, folder: str, raw: bytes, user: str | None = None):
        """Delivers one message into a folder, unread."""
        self.append(folder, [raw], user=user)

    def deliver(self, messages, folder: str = "INBOX", user: str | None = None) -> int:
        return len(self.append(folder, messages, user=user))


class Account:
    """One user of a running ImapServer, with the server's interface: the
    mail helpers act on this user's mailbox, logins() counts this user's."""

    _PER_USER = {"create_folder", "folders", "flags", "message_ids", "count", "add_flags",
                 "append", "save", "deliver", "imap", "logins", "auth_failures",
                 "remove_flags"}

    def __init__(self, server: ImapServer, user: str):
        self.server = server
        self.user = user

    def __getattr__(self, name):
        attr = getattr(self.server, name)
        if name in self._PER_USER:
            return functools.partial(attr, user=self.user)
        return attr

    def __repr__(self):
        return f"<{self.server.name} account {self.user}>"
