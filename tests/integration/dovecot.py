"""A private Dovecot (IMAP + POP3) on 127.0.0.1 for the upstream-puller tests.

The Python twin of tests/support/dovecot.rs; both fill the one config
template tests/support/dovecot.conf.in. Its own config directory, four listeners
(IMAP with STARTTLS, IMAPS, POP3 with STLS, POP3S) on free ports, a server
certificate for localhost / 127.0.0.1 signed by its own CA (clients verify it
through `ca_file`), one passwd-file user, Maildir storage in either the
Maildir++ layout (separator ".") or LAYOUT=fs (separator "/"), and doveadm /
imaplib to put mail in and read flags back.

Also the helpers the test_upstream_*.py modules share: a gateway with an
`[mailbox.upstream]`, waiting on the API with a deadline, reading ticket
messages and the mailbox status.
"""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

USER = "alice"
PASSWORD = "s3cret-Pass"
WRONG_PASSWORD = "not-the-password"
PASSWORD_ENV = "MAILGATE_TEST_UPSTREAM_PASSWORD"

MAILDIR = "maildir++"
LAYOUT_FS = "fs"

# Processed / rejected keywords the gateway sets by default.
PROCESSED = "Mailgate"
REJECTED = "RejectedByMailgate"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dovecot_binary() -> str:
    for candidate in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot"):
        if os.path.exists(candidate):
            return candidate
    pytest.fail("dovecot is not installed: run ./scripts/test.sh (scripts/install-test-deps.sh "
                "installs dovecot-core, dovecot-imapd and dovecot-pop3d)", pytrace=False)


# ---------------------------------------------------------- certificates ---

_CERTS: dict[str, bytes] = {}


def _certificates() -> dict[str, bytes]:
    """A CA and a server certificate for localhost / 127.0.0.1 signed by it
    (made once per test session with the openssl command line)."""
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


# --------------------------------------------------------------- Dovecot ---

# The config template shared with tests/support/dovecot.rs.
TEMPLATE = Path(__file__).resolve().parents[1] / "support" / "dovecot.conf.in"
_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


def render_config(values: dict) -> str:
    """Fills every @NAME@ of the template; fails when a name is not in it or a
    placeholder is left over, so the template and this harness cannot drift."""
    conf = TEMPLATE.read_text()
    for name, value in values.items():
        key = f"@{name}@"
        assert key in conf, f"{TEMPLATE} has no placeholder {key}"
        conf = conf.replace(key, str(value))
    left = _PLACEHOLDER.findall(conf)
    assert not left, f"{TEMPLATE}: placeholders left unfilled: {left}"
    return conf


# Running instances by listening port (to find the Dovecot of an upstream config).
_BY_PORT: dict[int, "Dovecot"] = {}

class Dovecot:
    """One private Dovecot instance. `start()` it, `stop()` it."""

    def __init__(self, layout: str = MAILDIR):
        assert layout in (MAILDIR, LAYOUT_FS), layout
        self.layout = layout
        self.separator = "/" if layout == LAYOUT_FS else "."
        self.root: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.imap_port = self.imaps_port = self.pop3_port = self.pop3s_port = 0

    # -- paths ------------------------------------------------------------------
    @property
    def ca_file(self) -> str:
        return str(self.root / "ca.pem")

    @property
    def conf(self) -> str:
        return str(self.root / "dovecot.conf")

    def folder(self, *parts: str) -> str:
        """A folder name with this instance's separator: folder("INBOX", "support")."""
        return self.separator.join(parts)

    # -- process ----------------------------------------------------------------
    def start(self) -> "Dovecot":
        binary = dovecot_binary()
        # Not under pytest's tmp_path (0700): the mail processes run as nobody
        # and must reach the homes.
        self.root = Path(tempfile.mkdtemp(prefix="mailgate-dovecot-"))
        root = self.root
        os.chmod(root, 0o755)
        for name, data in _certificates().items():
            (root / name).write_bytes(data)
        os.chmod(root / "key.pem", 0o600)
        (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        os.chmod(root / "passwd", 0o644)
        home = root / "home" / USER
        home.mkdir(parents=True)
        for p in (root / "home", home):
            os.chown(p, 65534, 65534)
        for attempt in range(3):
            ports: list[int] = []
            while len(ports) < 4:
                p = _free_port()
                if p not in ports:
                    ports.append(p)
            self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port = ports
            self._write_conf()
            with open(root / "dovecot.stderr", "wb") as err:
                self.proc = subprocess.Popen([binary, "-F", "-c", self.conf],
                                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=err)
            try:
                self._wait_ready()
                break
            except AssertionError:
                # A port picked as free was taken meanwhile (other tests run on this host).
                if self.proc.poll() is not None and "in use" in self.stderr() + self.log() \
                        and attempt < 2:
                    continue
                raise
        for port in (self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port):
            _BY_PORT[port] = self
        # Make the INBOX exist, so that an empty mailbox is a valid state.
        self.doveadm("mailbox", "status", "-u", USER, "messages", "INBOX")
        return self

    def _write_conf(self):
        conf = render_config({
            "ROOT": str(self.root),
            "LAYOUT": ":LAYOUT=fs" if self.layout == LAYOUT_FS else "",
            "SEPARATOR": self.separator,
            "IMAP_PORT": self.imap_port,
            "IMAPS_PORT": self.imaps_port,
            "POP3_PORT": self.pop3_port,
            "POP3S_PORT": self.pop3s_port,
        })
        (self.root / "dovecot.conf").write_text(conf)

    def _wait_ready(self, timeout: float = 20):
        deadline = time.monotonic() + timeout
        for port in (self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port):
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"dovecot exited with {self.proc.returncode}:\n"
                                         f"{self.stderr()}\n{self.log()}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"dovecot did not listen on {port}:\n{self.log()}")
                    time.sleep(0.05)

    def stop(self):
        for port in (self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port):
            _BY_PORT.pop(port, None)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.root / "dovecot.log").read_text(errors="replace")
        except (FileNotFoundError, TypeError):
            return ""

    def stderr(self) -> str:
        try:
            return (self.root / "dovecot.stderr").read_text(errors="replace")
        except (FileNotFoundError, TypeError):
            return ""

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def auth_failures(self) -> int:
        """Logins refused for a wrong password (auth_verbose logs each one)."""
        return sum(1 for line in self.log().splitlines() if "Password mismatch" in line)

    def logins(self) -> int:
        """Successful IMAP/POP3 logins."""
        return sum(1 for line in self.log().splitlines()
                   if re.search(r"(imap|pop3)-login: (Info: )?Login: ", line))

    # -- doveadm ----------------------------------------------------------------
    def doveadm(self, *args: str, input: bytes | None = None, check: bool = True) -> str:
        r = subprocess.run(["doveadm", "-c", self.conf, *args], input=input,
                           capture_output=True, timeout=120,
                           stdin=None if input is not None else subprocess.DEVNULL)
        out = r.stdout.decode("utf-8", "replace")
        if check:
            assert r.returncode == 0, (f"doveadm {' '.join(args)} failed ({r.returncode}): "
                                       f"{out}{r.stderr.decode('utf-8', 'replace')}")
        return out

    def create_folder(self, name: str):
        self.doveadm("mailbox", "create", "-u", USER, name)

    def folders(self) -> list[str]:
        return [f for f in self.doveadm("mailbox", "list", "-u", USER).split("\n") if f]

    def save(self, folder: str, raw: bytes):
        """Delivers one message into a folder, unread."""
        self.doveadm("save", "-u", USER, "-m", folder, input=raw)

    def flags(self, folder: str = "INBOX") -> list[tuple[int, frozenset]]:
        """(uid, flags without \\Recent) of every message in a folder, by uid."""
        out = self.doveadm("-f", "tab", "fetch", "-u", USER, "uid flags", "mailbox", folder, "all")
        rows = []
        for line in out.splitlines()[1:]:
            if "\t" not in line:
                continue
            uid, flags = line.split("\t", 1)
            # \Recent depends on which session saw the message first: not a fact about it.
            rows.append((int(uid), frozenset(f for f in flags.split() if f != "\\Recent")))
        rows.sort(key=lambda r: r[0])
        return rows

    def message_ids(self, folder: str = "INBOX") -> dict[int, str]:
        """uid -> Message-ID (without <>, "" when none)."""
        out = self.doveadm("-f", "tab", "fetch", "-u", USER, "uid hdr.message-id", "mailbox",
                           folder, "all")
        res = {}
        for line in out.splitlines()[1:]:
            if "\t" not in line:
                continue
            uid, mid = line.split("\t", 1)
            res[int(uid)] = mid.strip().strip("<>")
        return res

    def count(self, folder: str = "INBOX") -> int:
        return len(self.flags(folder))

    def add_flags(self, folder: str, uid: int | str, flags: str):
        self.doveadm("flags", "add", "-u", USER, flags, "mailbox", folder, "uid", str(uid))

    def remove_flags(self, folder: str, flags: str, query: tuple = ("all",)):
        self.doveadm("flags", "remove", "-u", USER, flags, "mailbox", folder, *query)

    def uidvalidity(self, folder: str = "INBOX") -> int:
        out = self.doveadm("-f", "tab", "mailbox", "status", "-u", USER, "uidvalidity", folder)
        head, row = out.splitlines()[:2]
        return int(row.split("\t")[head.split("\t").index("uidvalidity")])

    def set_uidvalidity(self, folder: str, value: int):
        self.doveadm("mailbox", "update", "-u", USER, "--uid-validity", str(value), folder)

    # -- IMAP (bulk) ------------------------------------------------------------
    def imap(self) -> imaplib.IMAP4:
        c = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=120)
        c.login(USER, PASSWORD)
        return c

    def deliver(self, messages, folder: str = "INBOX") -> int:
        """Delivers many messages the way an MTA does: each a file written in
        the folder's Maildir tmp/ and renamed into new/ (Dovecot assigns their
        UIDs on the next access). Much faster than IMAP APPEND for thousands."""
        home = self.root / "home" / USER / "Maildir"
        if folder != "INBOX":
            name = folder.split(self.separator, 1)[1] if folder.startswith("INBOX" + self.separator) \
                else folder
            home = home / (name.replace(self.separator, "/") if self.layout == LAYOUT_FS
                           else "." + name)
        for sub in ("tmp", "new", "cur"):
            assert (home / sub).is_dir(), f"{folder}: no Maildir at {home} (create the folder first)"
        stamp = int(time.time())
        n = 0
        for i, raw in enumerate(messages):
            base = f"{stamp}.M{i}P{os.getpid()}.mailgate-test,S={len(raw)}"
            tmp = home / "tmp" / base
            tmp.write_bytes(raw)
            os.chown(tmp, 65534, 65534)
            os.rename(tmp, home / "new" / base)
            n += 1
        return n

    def append(self, folder: str, messages, flags: str = "") -> list[int]:
        """APPENDs many messages on one IMAP connection; returns their UIDs."""
        uids = []
        c = self.imap()
        try:
            for raw in messages:
                typ, data = c.append(folder, f"({flags})" if flags else None, None, raw)
                text = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
                assert typ == "OK", f"APPEND to {folder} refused: {typ} {text}"
                m = re.search(r"APPENDUID \d+ (\d+)", text)
                assert m, f"no APPENDUID in {text!r}"
                uids.append(int(m.group(1)))
        finally:
            try:
                c.logout()
            except (imaplib.IMAP4.error, OSError):
                pass
        return uids


@pytest.fixture
def dovecot():
    """A started private Dovecot, Maildir++ layout (separator ".")."""
    d = Dovecot(MAILDIR).start()
    yield d
    d.stop()


@pytest.fixture
def dovecot_factory():
    """Factory for more instances: dovecot_factory(layout=MAILDIR)."""
    made = []

    def factory(layout: str = MAILDIR) -> Dovecot:
        d = Dovecot(layout).start()
        made.append(d)
        return d

    yield factory
    for d in made:
        d.stop()


# --------------------------------------------------------------- gateway ---

def upstream(d: Dovecot, protocol: str = "imap", security: str = "tls", **over) -> dict:
    """An [mailbox.upstream] table for this Dovecot, password from PASSWORD_ENV."""
    port = {("imap", "tls"): d.imaps_port, ("imap", "starttls"): d.imap_port,
            ("imap", "none"): d.imap_port, ("pop3", "tls"): d.pop3s_port,
            ("pop3", "starttls"): d.pop3_port, ("pop3", "none"): d.pop3_port}[(protocol, security)]
    u = {
        "protocol": protocol,
        "host": "localhost",
        "port": port,
        "security": security,
        "user": USER,
        "password_env": PASSWORD_ENV,
        "ca_file": d.ca_file,
        "poll_interval": "1s",
        "idle": False,
        "fetch_per_minute": 100000,
    }
    u.update(over)
    return {k: v for k, v in u.items() if v is not None}


def mailbox_config(up: dict | None, name: str = "support", **over) -> dict:
    m = {"name": name, "addresses": [f"{name}@example.test"],
         "queue": name.capitalize(), "default": name == "support"}
    m.update(over)
    if up is not None:
        m["upstream"] = up
    return m


def gateway_with(make_gateway, up: dict | None = None, *, mailboxes: list | None = None,
                 password: str | None = PASSWORD, extra: dict | None = None,
                 start: bool = True, env: dict | None = None):
    """A gateway whose `support` mailbox pulls from `up` (plus `sales` without upstream)."""
    boxes = mailboxes if mailboxes is not None else [
        mailbox_config(up), mailbox_config(None, "sales")]
    cfg = {"mailbox": boxes}
    if extra:
        cfg.update(extra)
    e = dict(env or {})
    if password is not None:
        e.setdefault(PASSWORD_ENV, password)
    g = make_gateway(cfg, env=e, start=False)
    if start:
        start_gateway(g)
    return g


def _login_attempts(d: "Dovecot") -> int:
    return d.logins() + d.auth_failures()


def start_gateway(g, timeout: float = 20):
    """Starts `mailgate serve` and waits until it has tried each upstream
    mailbox once (a success, an error, paused, or a login seen by Dovecot
    while a big first sync runs): a clear failure when polling never starts."""
    ups = {m["name"]: m["upstream"] for m in g.config["mailbox"] if m.get("upstream")}
    baseline = {}
    for up in ups.values():
        d = _BY_PORT.get(up.get("port"))
        if d is not None:
            baseline[id(d)] = _login_attempts(d)
    g.start()
    wait_first_sync(g, baseline, timeout)
    return g


def wait_first_sync(g, baseline: dict, timeout: float = 20):
    ups = {m["name"]: m["upstream"] for m in g.config["mailbox"] if m.get("upstream")}
    names = list(ups)

    def tried():
        for name, up in ups.items():
            mb = mailbox(g, name)
            if mb["last_success"] or mb["last_error"] or mb["status"] == "paused":
                continue
            d = _BY_PORT.get(up.get("port"))
            if d is not None and id(d) in baseline and _login_attempts(d) > baseline[id(d)]:
                continue
            return False
        return True

    deadline = time.monotonic() + timeout
    while not tried():
        if not g.alive():
            raise AssertionError(f"mailgate exited ({g.proc.returncode}):\n{g.log_tail(60)}")
        if time.monotonic() > deadline:
            raise AssertionError(
                f"`mailgate serve` has not synced its upstream mailbox(es) {names} within "
                f"{timeout}s of start-up: no last_success, no last_error, not paused, no login "
                f"(GET /api/v1/mailboxes: {g.api('/api/v1/mailboxes')['mailboxes']}). "
                f"The background polling does not run.\n{g.log_tail(20)}")
        time.sleep(0.1)


def wait_until(pred, timeout: float, what: str, interval: float = 0.2, g=None, d=None):
    """Polls pred() until it returns something truthy; fails with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if g is not None and not g.alive():
            raise AssertionError(f"mailgate exited ({g.proc.returncode}) while waiting for "
                                 f"{what}:\n{g.log_tail(60)}")
        if time.monotonic() > deadline:
            detail = ""
            if g is not None:
                detail += f"\n--- mailgate log (last 40 lines) ---\n{g.log_tail(40)}"
                try:
                    detail += f"\n--- mailboxes API ---\n{g.api('/api/v1/mailboxes')}"
                except Exception as e:  # noqa: BLE001 - diagnostics only
                    detail += f"\n(mailboxes API unavailable: {e!r})"
            if d is not None:
                detail += f"\n--- dovecot log (last 20 lines) ---\n{d.log_tail(20)}"
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


def mailbox(g, name: str = "support") -> dict:
    return g.api(f"/api/v1/mailboxes/{name}")


def ticket_messages(g, mailbox_name: str | None = None) -> list[dict]:
    """Every stored message (full JSON), via the tickets API."""
    params = {"mailbox": mailbox_name} if mailbox_name else {}
    out = []
    for t in g.tickets(**params):
        out.extend(g.ticket(t["id"])["messages"])
    return out


def message_count(g) -> int:
    return sum(t["message_count"] for t in g.tickets())


def labelled(flags: frozenset, processed: str = PROCESSED) -> bool:
    return "\\Seen" in flags and processed in flags


def run_command(g, *args, stdin: str | None = None, env: dict | None = None,
                config: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs `mailgate ARGS --config <the gateway's config>` with the gateway's environment."""
    e = {k: v for k, v in os.environ.items() if k != "MAILGATE_TEST_TOKEN"}
    e.setdefault("NO_COLOR", "1")
    e.update(g.extra_env)
    if env:
        e.update(env)
    e = {k: v for k, v in e.items() if v is not None}
    return subprocess.run([g.binary, *args, "--config", str(config or g.config_path)],
                          input=stdin if stdin is not None else "", capture_output=True,
                          text=True, timeout=timeout, env=e, cwd=g.workdir)


SYNCED_RE = re.compile(r"synced (\S+): (\d+) listed, (\d+) imported, (\d+) rejected, "
                       r"(\d+) duplicates, (\d+) resumed")


def parse_synced(out: str) -> dict | None:
    m = SYNCED_RE.search(out)
    if not m:
        return None
    keys = ("listed", "imported", "rejected", "duplicates", "resumed")
    return {"name": m.group(1), **{k: int(v) for k, v in zip(keys, m.groups()[1:])}}
