"""A private Courier-IMAP 5.0 on 127.0.0.1 for the upstream-puller tests.

Debian's courier-imap conflicts with dovecot-imapd, so
scripts/install-imap-servers.sh unpacks it (dpkg -x) under
/opt/mailgate-test/courier and apt-installs only what does not conflict
(courier-base: couriertcpd, couriertls; courier-authdaemon; userdb).

Courier reads fixed system paths: its auth daemon and the auth client inside
imaplogin find their config, the user database and the daemon's socket only
under /etc/courier and /run/courier. So the instance runs in a private mount
namespace (`unshare -m`) where a temp dir's etc/ and run/ are bind-mounted
over those two paths; nothing of the host's is changed. In there: authdaemond
(authuserdb), one couriertcpd for IMAP with STARTTLS and one for IMAPS
(couriertls -server), both running imaplogin -> imapd on Maildir++ homes
owned by nobody. The namespace is a PID namespace too, so that stopping the
instance ends all its daemons. Users are added to the running instance by
entering its mount namespace (nsenter) to run userdb + makeuserdb. Logins and refused logins are
read from the daemons' stderr (`LOGIN, user=...` / `LOGIN FAILED, user=...`).

Quirks the tests live with:
- hierarchy separator "." (folders INBOX.x), like Dovecot's Maildir++;
- no MOVE capability: a client falls back to UID COPY + STORE \\Deleted +
  EXPUNGE (UIDPLUS is there, so UID EXPUNGE);
- IDLE does not announce new mail promptly without Courier's file
  notification (it rescans every IMAP_IDLE_TIMEOUT s): tests that need a
  pickup after the first sync rely on a short poll_interval;
- STARTTLS fails unless the certificate file is readable by group courier
  (couriertls runs as that user), so it is chgrp'ed;
- SEARCH LARGER / SMALLER compare the size of the stored file, with LF line
  ends, not RFC822.SIZE (CRLF): a 238-byte message of 10 lines is LARGER 227
  but not LARGER 228;
- a failed login takes about 5 s.
"""

from __future__ import annotations

import grp
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from imapbase import PASSWORD, ImapServer, free_ports

PREFIX = Path(os.environ.get("MAILGATE_TEST_PREFIX", "/opt/mailgate-test")) / "courier"
IMAPD = PREFIX / "usr/bin/imapd"
IMAPLOGIN = PREFIX / "usr/lib/courier/courier/imaplogin"
AUTHDAEMOND = "/usr/lib/courier/courier-authlib/authdaemond"

# Runs inside the private mount namespace: $1 is the instance root.
_RUN = r"""
set -e
R=$1
# Mount points (courier-base makes them; /run may be fresh since).
mkdir -p /etc/courier /run/courier
mount --bind "$R/etc" /etc/courier
mount --bind "$R/run" /run/courier
set -a
. /etc/courier/authdaemonrc
set +a
(umask 022; makeuserdb)
"$AUTHDAEMOND" &
i=0
while [ ! -S /run/courier/authdaemon/socket ]; do
    i=$((i+1)); [ $i -lt 200 ] || { echo "authdaemond did not start" >&2; exit 1; }
    sleep 0.05
done
set -a
. /etc/courier/imapd
. /etc/courier/imapd-ssl
IMAP_STARTTLS=YES
set +a
TCPD="-address=127.0.0.1 -maxprocs=100 -maxperip=100 -nodnslookup -noidentlookup"
/usr/sbin/couriertcpd $TCPD "$PORT" "$IMAPLOGIN" "$IMAPD" Maildir &
IMAP_TLS=1 /usr/sbin/couriertcpd $TCPD "$SSLPORT" /usr/bin/couriertls -server -tcpd \
    -user=courier "$IMAPLOGIN" "$IMAPD" Maildir &
wait
"""


def courier_available() -> str | None:
    """None when everything is there, else what is missing."""
    for path in (IMAPD, IMAPLOGIN, Path(AUTHDAEMOND), Path("/usr/sbin/couriertcpd"),
                 Path("/usr/bin/couriertls"), Path("/usr/sbin/makeuserdb")):
        if not path.exists():
            return str(path)
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            return tool
    return None


class Courier(ImapServer):
    name = "courier"
    separator = "."
    has_move = False

    def __init__(self):
        super().__init__()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Courier":
        missing = courier_available()
        if missing:
            pytest.fail(f"Courier-IMAP is not installed ({missing} missing): run ./scripts/test.sh "
                        "(scripts/install-imap-servers.sh unpacks it under /opt/mailgate-test)",
                        pytrace=False)
        self.root = Path(tempfile.mkdtemp(prefix="mailgate-courier-"))
        root = self.root
        os.chmod(root, 0o755)
        etc, run = root / "etc", root / "run"
        (root / "home").mkdir()
        etc.mkdir()
        (run / "authdaemon").mkdir(parents=True)
        self._write_certificates(root)
        courier_gid = grp.getgrnam("courier").gr_gid
        # couriertls wants key and certificate in one file, readable by group courier.
        pem = etc / "imapd.pem"
        pem.write_bytes((root / "key.pem").read_bytes() + (root / "cert.pem").read_bytes())
        os.chown(pem, 0, courier_gid)
        os.chmod(pem, 0o640)
        for name in ("imapd", "imapd-ssl"):
            shutil.copy(PREFIX / "etc/courier" / name, etc / name)
        if Path("/etc/courier/dhparams.pem").exists():
            shutil.copy("/etc/courier/dhparams.pem", etc / "dhparams.pem")
        (etc / "authdaemonrc").write_text(
            'authmodulelist="authuserdb"\n'
            'daemons=3\n'
            'authdaemonvar=/run/courier/authdaemon\n'
            'DEBUG_LOGIN=0\n'
            'DEFAULTOPTIONS=""\n')
        for p in (run, run / "authdaemon"):
            os.chown(p, 0, courier_gid)
            os.chmod(p, 0o770)
        (etc / "userdb").write_text("")
        os.chmod(etc / "userdb", 0o600)
        self._userdb_line(self.user)
        for attempt in range(3):
            self.imap_port, self.imaps_port = free_ports(2)
            with open(etc / "imapd", "a") as f:
                f.write(f"\n# mailgate tests\nADDRESS=127.0.0.1\nPORT={self.imap_port}\n"
                        "IMAP_IDLE_TIMEOUT=60\nMAXDAEMONS=100\nMAXPERIP=100\n")
            with open(etc / "imapd-ssl", "a") as f:
                f.write(f"\n# mailgate tests\nSSLPORT={self.imaps_port}\n"
                        "TLS_CERTFILE=/etc/courier/imapd.pem\n"
                        "TLS_DHPARAMS=/etc/courier/dhparams.pem\n"
                        "TLS_CACHEFILE=\nTLS_VERIFYPEER=NONE\n")
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "AUTHDAEMOND": AUTHDAEMOND,
                   "IMAPD": str(IMAPD), "IMAPLOGIN": str(IMAPLOGIN), "LANG": "C"}
            with open(root / "courier.log", "ab") as err:
                # Its own PID namespace too (couriertcpd makes a process group of
                # its own): when unshare ends, every daemon of the instance ends.
                self.proc = subprocess.Popen(
                    ["unshare", "-m", "--propagation", "private", "-p", "-f", "--kill-child",
                     "sh", "-c", _RUN, "sh", str(root)],
                    stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env,
                    start_new_session=True)
            try:
                self._wait_ready()
                break
            except AssertionError:
                if "in use" in self.log() and attempt < 2:
                    self._kill()
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
                    raise AssertionError(f"courier exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"courier did not listen on {port}:\n{self.log()}")
                    time.sleep(0.05)

    def _userdb_line(self, user: str):
        home = self.root / "home" / user
        maildir = home / "Maildir"
        for sub in ("", "cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        for dirpath, dirnames, _ in os.walk(home):
            os.chown(dirpath, 65534, 65534)
        # userdb's text format; systempw is a crypt() hash (MD5 here).
        pw = subprocess.run(["userdbpw", "-md5"], input=PASSWORD + "\n", text=True,
                            capture_output=True, check=True).stdout.strip()
        with open(self.root / "etc" / "userdb", "a") as f:
            f.write(f"{user}\tuid=65534|gid=65534|home={home}|mail={maildir}|systempw={pw}\n")

    def _create_user(self, user: str):
        self._userdb_line(user)
        # makeuserdb only knows /etc/courier: run it in the instance's namespace.
        # authuserdb opens userdb.dat again when it changed.
        r = subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", "--", "sh", "-c",
                            "umask 022; makeuserdb"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"makeuserdb failed: {r.stdout}{r.stderr}"

    def _kill(self):
        # unshare (with --fork) ignores SIGTERM; killed, --kill-child has its
        # child, the namespace's init, killed, and with it every process of the
        # PID namespace. Nothing of the instance is worth a graceful end.
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self):
        self._unregister()
        self._kill()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.root / "courier.log").read_text(errors="replace")
        except (FileNotFoundError, TypeError):
            return ""

    def logins(self, user: str | None = None) -> int:
        pat = re.compile(r"\bLOGIN, user=" + (re.escape(user) + "," if user else ""))
        return sum(1 for line in self.log().splitlines() if pat.search(line))

    def auth_failures(self, user: str | None = None) -> int:
        pat = re.compile(r"\bLOGIN FAILED, user=" + (re.escape(user) + "," if user else ""))
        return sum(1 for line in self.log().splitlines() if pat.search(line))
