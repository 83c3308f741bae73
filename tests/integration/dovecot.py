"""A private Dovecot (IMAP + POP3) on 127.0.0.1 for the upstream-puller tests.

The Python twin of tests/support/dovecot.rs; both fill the one config
template tests/support/dovecot.conf.in. Its own config directory, four listeners
(IMAP with STARTTLS, IMAPS, POP3 with STLS, POP3S) on free ports, a server
certificate for localhost / 127.0.0.1 signed by its own CA (clients verify it
through `ca_file`), one passwd-file user, Maildir storage in either the
Maildir++ layout (separator ".") or LAYOUT=fs (separator "/"), and doveadm /
imaplib to put mail in and read flags back.

`Dovecot` is one `imapbase.ImapServer` (the interface Courier and Cyrus
share, see imapbase.py); its mail helpers use doveadm, and take an optional
`user` (the default account is alice) so that one instance can serve several
tests through `add_user()` accounts.

Also the helpers the test_upstream_*.py modules share: a gateway with an
`[mailbox.upstream]`, waiting on the API with a deadline, reading ticket
messages and the mailbox status.
"""

from __future__ import annotations

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

from imapbase import (  # noqa: F401 - re-exported for the test modules
    _BY_PORT, PASSWORD, USER, WRONG_PASSWORD, Account, ImapServer, _certificates, _free_port,
    free_ports)

PASSWORD_ENV = "MAILGATE_TEST_UPSTREAM_PASSWORD"

MAILDIR = "maildir++"
LAYOUT_FS = "fs"

# Processed / rejected keywords the gateway sets by default.
PROCESSED = "Mailgate"
REJECTED = "RejectedByMailgate"


def dovecot_binary() -> str:
    for candidate in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot"):
        if os.path.exists(candidate):
            return candidate
    pytest.fail("dovecot is not installed: run ./scripts/test.sh (scripts/install-test-deps.sh "
                "installs dovecot-core, dovecot-imapd and dovecot-pop3d)", pytrace=False)


# --------------------------------------------------------------- Dovecot ---

# The config template shared with tests/support/dovecot.rs.
TEMPLATE = Path(__file__).resolve().parents[1] / "support" / "dovecot.conf.in"
_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


# The optional OAuth2 block (XOAUTH2 / OAUTHBEARER through Dovecot's oauth2
# passdb and an RFC 7662 introspection endpoint), shared with dovecot.rs.
OAUTH2_BLOCK = TEMPLATE.parent / "dovecot-oauth2.conf.in"
OAUTH2_EXT = TEMPLATE.parent / "dovecot-oauth2.conf.ext.in"


def render_config(values: dict, template: Path = TEMPLATE) -> str:
    """Fills every @NAME@ of the template; fails when a name is not in it or a
    placeholder is left over, so the template and this harness cannot drift."""
    conf = template.read_text()
    for name, value in values.items():
        key = f"@{name}@"
        assert key in conf, f"{template} has no placeholder {key}"
        conf = conf.replace(key, str(value))
    left = _PLACEHOLDER.findall(conf)
    assert not left, f"{template}: placeholders left unfilled: {left}"
    return conf


def oauth2_block(root: Path, introspection_url: str) -> str:
    """The config lines that make a Dovecot rooted at `root` take OAuth2
    logins checked at `introspection_url`; writes the passdb's settings file
    into `root`. Append them to the instance's config."""
    (root / "dovecot-oauth2.conf.ext").write_text(
        render_config({"INTROSPECTION_URL": introspection_url}, OAUTH2_EXT))
    return render_config({"ROOT": str(root)}, OAUTH2_BLOCK)


class Dovecot(ImapServer):
    """One private Dovecot instance. `start()` it, `stop()` it."""

    name = "dovecot"
    has_move = True

    def __init__(self, layout: str = MAILDIR, introspection_url: str | None = None):
        super().__init__()
        self.introspection_url = introspection_url
        assert layout in (MAILDIR, LAYOUT_FS), layout
        self.layout = layout
        self.separator = "/" if layout == LAYOUT_FS else "."
        self.proc: subprocess.Popen | None = None
        self.pop3_port = self.pop3s_port = 0

    @property
    def conf(self) -> str:
        return str(self.root / "dovecot.conf")

    # -- process ----------------------------------------------------------------
    def start(self) -> "Dovecot":
        binary = dovecot_binary()
        # Not under pytest's tmp_path (0700): the mail processes run as nobody
        # and must reach the homes.
        self.root = Path(tempfile.mkdtemp(prefix="mailgate-dovecot-"))
        root = self.root
        os.chmod(root, 0o755)
        self._write_certificates(root)
        (root / "passwd").write_text("")
        os.chmod(root / "passwd", 0o644)
        (root / "home").mkdir()
        os.chown(root / "home", 65534, 65534)
        self._add_passwd(USER)
        for attempt in range(3):
            ports = free_ports(4)
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
        self._register(self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port)
        # Make the INBOX exist, so that an empty mailbox is a valid state.
        self.doveadm("mailbox", "status", "-u", USER, "messages", "INBOX")
        return self

    def _add_passwd(self, user: str):
        home = self.root / "home" / user
        home.mkdir()
        os.chown(home, 65534, 65534)
        with open(self.root / "passwd", "a") as f:
            f.write(f"{user}:{{PLAIN}}{PASSWORD}\n")

    def _create_user(self, user: str):
        self._add_passwd(user)
        # The auth process reads passwd-file again when it changed, looking at
        # most once a second: wait until it knows the user.
        deadline = time.monotonic() + 10
        while "doesn't exist" in self.doveadm("user", user, check=False):
            assert time.monotonic() < deadline, f"dovecot does not know {user}:\n{self.log_tail()}"
            time.sleep(0.1)
        self.doveadm("mailbox", "status", "-u", user, "messages", "INBOX")

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
        if self.introspection_url:
            conf += oauth2_block(self.root, self.introspection_url)
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
        self._unregister()
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

    def auth_failures(self, user: str | None = None) -> int:
        """Logins refused for a wrong password (auth_verbose logs each one)."""
        who = f"({user}," if user else ""
        return sum(1 for line in self.log().splitlines()
                   if "Password mismatch" in line and who in line)

    def logins(self, user: str | None = None) -> int:
        """Successful IMAP/POP3 logins."""
        who = f"user=<{user}>" if user else ""
        return sum(1 for line in self.log().splitlines()
                   if re.search(r"(imap|pop3)-login: (Info: )?Login: ", line) and who in line)

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

    def create_folder(self, name: str, user: str | None = None):
        self.doveadm("mailbox", "create", "-u", user or self.user, name)

    def folders(self, user: str | None = None) -> list[str]:
        return [f for f in self.doveadm("mailbox", "list", "-u", user or self.user).split("\n")
                if f]

    def save(self, folder: str, raw: bytes, user: str | None = None):
        """Delivers one message into a folder, unread."""
        self.doveadm("save", "-u", user or self.user, "-m", folder, input=raw)

    def flags(self, folder: str = "INBOX", user: str | None = None) -> list[tuple[int, frozenset]]:
        """(uid, flags without \\Recent) of every message in a folder, by uid."""
        out = self.doveadm("-f", "tab", "fetch", "-u", user or self.user, "uid flags", "mailbox",
                           folder, "all")
        rows = []
        for line in out.splitlines()[1:]:
            if "\t" not in line:
                continue
            uid, flags = line.split("\t", 1)
            # \Recent depends on which session saw the message first: not a fact about it.
            rows.append((int(uid), frozenset(f for f in flags.split() if f != "\\Recent")))
        rows.sort(key=lambda r: r[0])
        return rows

    def message_ids(self, folder: str = "INBOX", user: str | None = None) -> dict[int, str]:
        """uid -> Message-ID (without <>, "" when none)."""
        out = self.doveadm("-f", "tab", "fetch", "-u", user or self.user, "uid hdr.message-id",
                           "mailbox", folder, "all")
        res = {}
        for line in out.splitlines()[1:]:
            if "\t" not in line:
                continue
            uid, mid = line.split("\t", 1)
            res[int(uid)] = mid.strip().strip("<>")
        return res

    def count(self, folder: str = "INBOX", user: str | None = None) -> int:
        return len(self.flags(folder, user=user))

    def add_flags(self, folder: str, uid: int | str, flags: str, user: str | None = None):
        self.doveadm("flags", "add", "-u", user or self.user, flags, "mailbox", folder, "uid",
                     str(uid))

    def remove_flags(self, folder: str, flags: str, query: tuple = ("all",),
                     user: str | None = None):
        self.doveadm("flags", "remove", "-u", user or self.user, flags, "mailbox", folder, *query)

    def uidvalidity(self, folder: str = "INBOX") -> int:
        out = self.doveadm("-f", "tab", "mailbox", "status", "-u", USER, "uidvalidity", folder)
        head, row = out.splitlines()[:2]
        return int(row.split("\t")[head.split("\t").index("uidvalidity")])

    def set_uidvalidity(self, folder: str, value: int):
        self.doveadm("mailbox", "update", "-u", USER, "--uid-validity", str(value), folder)

    # -- bulk ---------------------------------------------------------------------
    def deliver(self, messages, folder: str = "INBOX", user: str | None = None) -> int:
        """Delivers many messages the way an MTA does: each a file written in
        the folder's Maildir tmp/ and renamed into new/ (Dovecot assigns their
        UIDs on the next access). Much faster than IMAP APPEND for thousands."""
        home = self.root / "home" / (user or self.user) / "Maildir"
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

def upstream(d: ImapServer | Account, protocol: str = "imap", security: str = "tls", **over) -> dict:
    """An [mailbox.upstream] table for this server (or account), password from
    PASSWORD_ENV."""
    port = getattr(d, {("imap", "tls"): "imaps_port", ("imap", "starttls"): "imap_port",
                       ("imap", "none"): "imap_port", ("pop3", "tls"): "pop3s_port",
                       ("pop3", "starttls"): "pop3_port",
                       ("pop3", "none"): "pop3_port"}[(protocol, security)])
    u = {
        "protocol": protocol,
        "host": "localhost",
        "port": port,
        "security": security,
        "user": d.user,
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


def _login_attempts(d: ImapServer, user: str | None = None) -> int:
    return d.logins(user) + d.auth_failures(user)


def start_gateway(g, timeout: float = 20):
    """Starts `mailgate serve` and waits until it has tried each upstream
    mailbox once (a success, an error, paused, or a login seen by Dovecot
    while a big first sync runs): a clear failure when polling never starts."""
    ups = {m["name"]: m["upstream"] for m in g.config["mailbox"] if m.get("upstream")}
    baseline = {}
    for up in ups.values():
        d = _BY_PORT.get(up.get("port"))
        if d is not None:
            baseline[(id(d), up.get("user"))] = _login_attempts(d, up.get("user"))
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
            key = (id(d), up.get("user"))
            if d is not None and key in baseline and _login_attempts(d, key[1]) > baseline[key]:
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
