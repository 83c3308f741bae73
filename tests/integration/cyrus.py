"""A private Cyrus IMAP 3.6 on 127.0.0.1 for the upstream-puller tests.

Debian's cyrus-imapd conflicts with dovecot-imapd, and cyrus-common pulls in
an MTA, so scripts/install-imap-servers.sh unpacks both (dpkg -x) under
/opt/mailgate-test/cyrus and apt-installs only the libraries they link and
sasl2-bin. The binaries find their own libcyrus*.so through LD_LIBRARY_PATH.

One `master` process in the foreground (as root; it runs its services as
nobody: `cyrus_user`), with its own imapd.conf / cyrus.conf under a temp dir:
config directory, spool, proc and lock dirs, sockets all in there; two
services, imap (plain + STARTTLS) and imaps (`imapd -s`), on free loopback
ports; the server certificate of the tests' private CA. Logins are checked
against a private sasldb (saslpasswd2 -f, auxprop), users are added to the
running server by writing to it; each user's INBOX is created at its first
login (autocreate_quota). Cyrus logs only to syslog, which this host does not
run, so logins are counted from its per-user protocol telemetry (a directory
<configdirectory>/log/<user> makes imapd write each session there, starting
with a "---------- <user> <date>" line); refused logins are not counted.

Quirks the tests live with:
- altnamespace with unixhierarchysep: separator "/", personal folders next
  to INBOX (`support`), though INBOX/support works too; MOVE and UIDPLUS;
- IDLE does not announce new mail promptly without idled (not run here): a
  test that needs a pickup after the first sync uses a short poll_interval;
- APPEND replaces 8-bit bytes in headers with "X" (munge8bit): compare such
  headers only as Cyrus stores them;
- it reports \\Recent even in a read-only (EXAMINE) session: flags() leaves
  \\Recent out for every server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from imapbase import PASSWORD, ImapServer, free_ports

PREFIX = Path(os.environ.get("MAILGATE_TEST_PREFIX", "/opt/mailgate-test")) / "cyrus"
BIN = PREFIX / "usr/lib/cyrus/bin"
LIBDIR = PREFIX / "usr/lib/x86_64-linux-gnu"
NOBODY = 65534


def cyrus_available() -> str | None:
    """None when everything is there, else what is missing."""
    for path in (BIN / "master", BIN / "imapd", BIN / "ctl_cyrusdb",
                 Path("/usr/sbin/saslpasswd2")):
        if not path.exists():
            return str(path)
    return None


class Cyrus(ImapServer):
    name = "cyrus"
    separator = "/"
    has_move = True

    def __init__(self):
        super().__init__()
        self.proc: subprocess.Popen | None = None

    @property
    def conf(self) -> Path:
        return self.root / "imapd.conf"

    def start(self) -> "Cyrus":
        missing = cyrus_available()
        if missing:
            pytest.fail(f"Cyrus IMAP is not installed ({missing} missing): run ./scripts/test.sh "
                        "(scripts/install-imap-servers.sh unpacks it under /opt/mailgate-test)",
                        pytrace=False)
        self.root = Path(tempfile.mkdtemp(prefix="mailgate-cyrus-"))
        root = self.root
        os.chmod(root, 0o755)
        for d in ("conf/log", "spool", "run/proc", "run/lock", "run/socket"):
            (root / d).mkdir(parents=True)
        self._write_certificates(root)
        for name in ("cert.pem", "key.pem"):
            os.chown(root / name, NOBODY, NOBODY)
        self._add_sasl(self.user)
        conf = f"""\
configdirectory: {root}/conf
defaultpartition: default
partition-default: {root}/spool
proc_path: {root}/run/proc
mboxname_lockpath: {root}/run/lock
lmtpsocket: {root}/run/socket/lmtp
idlesocket: {root}/run/socket/idle
notifysocket: {root}/run/socket/notify
cyrus_user: nobody
cyrus_group: nogroup
servername: localhost
altnamespace: yes
unixhierarchysep: yes
autocreate_quota: 0
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {root}/sasldb2
sasl_mech_list: PLAIN LOGIN
tls_server_cert: {root}/cert.pem
tls_server_key: {root}/key.pem
"""
        self.conf.write_text(conf)
        for attempt in range(3):
            self.imap_port, self.imaps_port = free_ports(2)
            imapd = f"{BIN}/imapd -C {self.conf}"
            (root / "cyrus.conf").write_text(f"""\
START {{
  recover cmd="{BIN}/ctl_cyrusdb -C {self.conf} -r"
}}
SERVICES {{
  imap cmd="{imapd}" listen="127.0.0.1:{self.imap_port}" prefork=0 maxchild=100
  imaps cmd="{imapd} -s" listen="127.0.0.1:{self.imaps_port}" prefork=0 maxchild=100
}}
EVENTS {{
}}
""")
            for dirpath, _, filenames in os.walk(root):
                if dirpath == str(root):
                    continue
                os.chown(dirpath, NOBODY, NOBODY)
                for f in filenames:
                    os.chown(os.path.join(dirpath, f), NOBODY, NOBODY)
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LD_LIBRARY_PATH": str(LIBDIR),
                   "LANG": "C"}
            with open(root / "cyrus.stderr", "ab") as err:
                self.proc = subprocess.Popen(
                    [str(BIN / "master"), "-C", str(self.conf), "-M", str(root / "cyrus.conf"),
                     "-p", str(root / "master.pid")],
                    cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                    start_new_session=True)
            try:
                self._wait_ready()
                break
            except AssertionError:
                # A port picked as free was taken meanwhile: master exits (it logs
                # why only to syslog).
                if self.proc.poll() is not None and attempt < 2:
                    continue
                raise
        self._register(self.imap_port, self.imaps_port)
        self.count("INBOX")
        return self

    def _wait_ready(self, timeout: float = 20):
        deadline = time.monotonic() + timeout
        for port in (self.imap_port, self.imaps_port):
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"cyrus master exited with {self.proc.returncode} "
                                         f"(it logs to syslog only):\n{self.log()}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"cyrus did not listen on {port}:\n{self.log()}")
                    time.sleep(0.05)

    def _add_sasl(self, user: str):
        r = subprocess.run(["saslpasswd2", "-f", str(self.root / "sasldb2"), "-p", "-c",
                            "-u", "localhost", user], input=PASSWORD, text=True,
                           capture_output=True, timeout=30)
        assert r.returncode == 0, f"saslpasswd2 failed: {r.stdout}{r.stderr}"
        os.chown(self.root / "sasldb2", NOBODY, NOBODY)
        os.chmod(self.root / "sasldb2", 0o600)
        # Telemetry: imapd writes every session of this user in there.
        tele = self.root / "conf" / "log" / user
        tele.mkdir(parents=True, exist_ok=True)
        os.chown(tele, NOBODY, NOBODY)

    def _create_user(self, user: str):
        self._add_sasl(user)

    def stop(self):
        self._unregister()
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.proc is not None:
            try:  # imapd children still finishing a session
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.root / "cyrus.stderr").read_text(errors="replace")
        except (FileNotFoundError, TypeError):
            return ""

    def _telemetry(self, user: str | None):
        base = self.root / "conf" / "log"
        dirs = [base / user] if user else [p for p in base.iterdir() if p.is_dir()]
        for d in dirs:
            for f in d.glob("*"):
                try:
                    yield user or d.name, f.read_bytes()
                except FileNotFoundError:
                    pass

    def logins(self, user: str | None = None) -> int:
        """Sessions logged in (of `user`, or of anyone), from the telemetry."""
        n = 0
        for who, data in self._telemetry(user):
            n += data.count(f"---------- {who} ".encode())
        return n

    def log_tail(self, n: int = 30) -> str:
        """The stderr of master, and the end of the newest telemetry file."""
        out = self.log()
        try:
            files = sorted((self.root / "conf" / "log").glob("*/*"), key=lambda p: p.stat().st_mtime)
        except (FileNotFoundError, TypeError):
            files = []
        if files:
            out += f"\n--- {files[-1].name} ---\n" + files[-1].read_text(errors="replace")
        return "\n".join(out.splitlines()[-n:])
