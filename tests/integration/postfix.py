"""A private Postfix on 127.0.0.1 as the organisation's relay, for the
outbound tests (test-relay, the outbox worker, notifications).

Its own config directory, queue and log (`postfix -c DIR start`, as root),
three smtpd listeners on free loopback ports:

- `plain_port`:      a port-25 style relay, no TLS offered, open to 127.0.0.0/8;
- `submission_port`: STARTTLS (required) and SASL AUTH (only after TLS);
- `smtps_port`:      implicit TLS and SASL AUTH.

The certificate (localhost / 127.0.0.1) is signed by the suite's private CA
(dovecot.py makes it with openssl): give `ca_file` to trust it. SASL goes
through a second, auth-only private Dovecot (`smtpd_sasl_type = dovecot`)
with one passwd-file user. Mail for the addresses in `mailboxes` is delivered
by virtual(8) into one Maildir each; any other address of the domain gets
Postfix's own "550 5.1.1 ... User unknown". `default_transport`,
`relay_transport` and `local_transport` are `error`, so nothing leaves the
host. `refuse(address, "550 5.7.1 ...")` / `"450 4.2.0 ..."` makes smtpd
answer that to RCPT TO (check_recipient_access); `stop()` / `start()` take
the relay down and bring it back on the same ports.

Use the `postfix_relay` fixture, or `Postfix(...).start()` and `.stop()`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from dovecot import _certificates, _free_port, dovecot_binary, oauth2_block

DOMAIN = "relay.test"
USER = "relayuser"
PASSWORD = "relay-S3cret-pw"
PASSWORD_ENV = "MAILGATE_TEST_RELAY_PASSWORD"
MAILBOXES = ("alice@relay.test", "bob@relay.test")

POSTFIX = "/usr/sbin/postfix"

_AUTH_CONF = """\
# Auth-only private Dovecot: the SASL backend of the test Postfix.
base_dir = {root}/dovecot-run
state_dir = {root}/dovecot-state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols =
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
default_login_user = nobody
default_internal_user = nobody
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/sasl-passwd
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}}
service auth {{
  unix_listener {root}/auth/postfix {{
    mode = 0666
  }}
}}
"""

_MASTER_CF = """\
127.0.0.1:{plain} inet n - n - - smtpd
  -o syslog_name=postfix/plain
  -o smtpd_tls_security_level=none
  -o smtpd_sasl_auth_enable=no
127.0.0.1:{submission} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
127.0.0.1:{smtps} inet n - n - - smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
smtp      unix  -       -       n       -       -       smtp
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _main_cf(root: Path, mailboxes_base: Path) -> str:
    uid, gid = 65534, 65534
    etc = root / "etc"
    return f"""\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.localhost
mydomain = localhost
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtpd_banner = $myhostname ESMTP mailgate-test-relay
biff = no
alias_maps =
alias_database =
# Each smtpd serves one client and exits: a changed recipient_access map
# (after `postfix reload`) is read by the next connection, deterministically.
max_use = 1
# The relay: clients on loopback, or authenticated ones.
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access texthash:{etc}/recipient_access
# Nothing may leave the host: only domains routed with `route()` go on, to
# a loopback port.
transport_maps = texthash:{etc}/transport
smtp_tls_security_level = none
smtp_host_lookup = native
default_transport = error:the test relay delivers locally only
relay_transport = error:the test relay delivers locally only
local_transport = error:no local delivery
# virtual(8) to one Maildir per address.
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_maps = texthash:{etc}/vmailbox
virtual_mailbox_base = {mailboxes_base}
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 100
message_size_limit = 10240000
virtual_mailbox_limit = 0
# TLS with the suite's private CA.
smtpd_tls_cert_file = {root}/cert.pem
smtpd_tls_key_file = {root}/key.pem
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
# SASL through the private auth-only Dovecot.
smtpd_sasl_type = dovecot
smtpd_sasl_path = {root}/auth/postfix
smtpd_sasl_auth_enable = no
smtpd_sasl_security_options = noanonymous
broken_sasl_auth_clients = no
# Logging to a file (maillog_file must live under maillog_file_prefixes).
maillog_file_prefixes = {root}/log
maillog_file = {root}/log/postfix.log
"""


def _wait_greeting(port: int, deadline: float, tls: bool = False) -> bool:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if tls:
                    return True  # a TCP accept is all we can see without a handshake
                s.settimeout(5)
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


class Postfix:
    """One private Postfix relay (with its auth Dovecot). `start()`, `stop()`."""

    def __init__(self, mailboxes=MAILBOXES, introspection_url: str | None = None):
        """`introspection_url`: the auth Dovecot also takes XOAUTH2 and
        OAUTHBEARER, tokens checked at that RFC 7662 endpoint (dovecot.py's
        oauth2_block), so AUTH XOAUTH2 at submission is real end to end."""
        self.mailboxes = [m.lower() for m in mailboxes]
        self.introspection_url = introspection_url
        self.root: Path | None = None
        self.dovecot: subprocess.Popen | None = None
        self.plain_port = self.submission_port = self.smtps_port = 0
        self.running = False
        self._access: dict[str, str] = {}

    # -- paths ------------------------------------------------------------------
    @property
    def ca_file(self) -> str:
        return str(self.root / "ca.pem")

    @property
    def conf_dir(self) -> Path:
        return self.root / "etc"

    def _maildir(self, address: str) -> Path:
        local, domain = address.lower().split("@", 1)
        return self.root / "mail" / domain / local

    # -- process ----------------------------------------------------------------
    def start(self) -> "Postfix":
        """Starts (or, after stop(), restarts on the same ports)."""
        if not os.path.exists(POSTFIX):
            pytest.fail("postfix is not installed: run scripts/install-test-deps.sh",
                        pytrace=False)
        if os.geteuid() != 0:
            pytest.skip("a private Postfix master needs root")
        if self.root is None:
            self._setup()
        if self.dovecot is None or self.dovecot.poll() is not None:
            self._start_dovecot()
        r = subprocess.run([POSTFIX, "-c", str(self.conf_dir), "start"], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, f"postfix start failed:\n{r.stdout}{r.stderr}\n{self.log_tail()}"
        self.running = True
        deadline = time.monotonic() + 30
        for port, tls in ((self.plain_port, False), (self.submission_port, False),
                          (self.smtps_port, True)):
            assert _wait_greeting(port, deadline, tls), \
                f"postfix does not answer on 127.0.0.1:{port}:\n{self.log_tail()}"
        return self

    def _setup(self):
        # Not under pytest's tmp_path (0700): virtual(8) runs as nobody.
        self.root = Path(tempfile.mkdtemp(prefix="mailgate-postfix-"))
        root = self.root
        os.chmod(root, 0o755)
        for sub in ("etc", "queue", "data", "log", "mail", "auth"):
            (root / sub).mkdir()
        shutil.chown(root / "data", "postfix", "postfix")
        os.chown(root / "mail", 65534, 65534)
        for name, data in _certificates().items():
            (root / name).write_bytes(data)
        os.chmod(root / "key.pem", 0o600)
        (root / "sasl-passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        ports: list[int] = []
        while len(ports) < 3:
            p = _free_port()
            if p not in ports:
                ports.append(p)
        self.plain_port, self.submission_port, self.smtps_port = ports
        (self.conf_dir / "main.cf").write_text(_main_cf(root, root / "mail"))
        (self.conf_dir / "master.cf").write_text(_MASTER_CF.format(
            plain=self.plain_port, submission=self.submission_port, smtps=self.smtps_port))
        (self.conf_dir / "vmailbox").write_text(
            "".join(f"{a} {a.split('@')[1]}/{a.split('@')[0]}/\n" for a in self.mailboxes))
        self._write_access()
        (self.conf_dir / "transport").write_text("")
        auth_conf = _AUTH_CONF.format(root=root)
        if self.introspection_url:
            auth_conf += oauth2_block(root, self.introspection_url)
        (root / "dovecot-auth.conf").write_text(auth_conf)
        r = subprocess.run([POSTFIX, "-c", str(self.conf_dir), "check"], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, f"postfix check failed:\n{r.stdout}{r.stderr}"

    def _start_dovecot(self):
        with open(self.root / "dovecot.stderr", "wb") as err:
            self.dovecot = subprocess.Popen(
                [dovecot_binary(), "-F", "-c", str(self.root / "dovecot-auth.conf")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        socket_path = self.root / "auth" / "postfix"
        deadline = time.monotonic() + 20
        while not socket_path.exists():
            if self.dovecot.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"auth dovecot did not start ({self.dovecot.poll()}):\n"
                    f"{(self.root / 'dovecot.stderr').read_text(errors='replace')}")
            time.sleep(0.05)

    def stop(self):
        """Stops Postfix (the relay is down: connections are refused)."""
        if not self.running:
            return
        subprocess.run([POSTFIX, "-c", str(self.conf_dir), "stop"], capture_output=True,
                       timeout=60, stdin=subprocess.DEVNULL)
        pid_file = self.root / "queue" / "pid" / "master.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            pid = None
        deadline = time.monotonic() + 20
        while pid is not None and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            if pid is not None:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        # Until the listening ports are closed, "down" is not true yet.
        for port in (self.plain_port, self.submission_port, self.smtps_port):
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except OSError:
                    break
                time.sleep(0.05)
        self.running = False

    def close(self):
        """Stops everything and removes the instance's directory."""
        self.stop()
        if self.dovecot is not None and self.dovecot.poll() is None:
            self.dovecot.terminate()
            try:
                self.dovecot.wait(15)
            except subprocess.TimeoutExpired:
                self.dovecot.kill()
                self.dovecot.wait(10)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- behaviour --------------------------------------------------------------
    def _write_access(self):
        (self.conf_dir / "recipient_access").write_text(
            "".join(f"{a} {action}\n" for a, action in self._access.items()))

    def refuse(self, address: str, action: str | None):
        """Makes smtpd answer RCPT TO:<address> with `action`, a check_access
        result such as "550 5.7.1 refused by policy" or "450 4.2.0 try later"
        (None removes it). Takes effect for the next connection."""
        if action is None:
            self._access.pop(address.lower(), None)
        else:
            self._access[address.lower()] = action
        self._write_access()
        if self.running:
            r = subprocess.run([POSTFIX, "-c", str(self.conf_dir), "reload"], capture_output=True,
                               text=True, timeout=60, stdin=subprocess.DEVNULL)
            assert r.returncode == 0, f"postfix reload failed:\n{r.stdout}{r.stderr}"

    def route(self, domain: str, port: int):
        """Relays mail for `domain` to 127.0.0.1:`port` (a gateway's SMTP
        listener); takes effect after the reload."""
        path = self.conf_dir / "transport"
        path.write_text(path.read_text() + f"{domain} smtp:[127.0.0.1]:{port}\n")
        if self.running:
            r = subprocess.run([POSTFIX, "-c", str(self.conf_dir), "reload"], capture_output=True,
                               text=True, timeout=60, stdin=subprocess.DEVNULL)
            assert r.returncode == 0, f"postfix reload failed:\n{r.stdout}{r.stderr}"

    # -- what arrived -----------------------------------------------------------
    def maildir_messages(self, address: str) -> list[bytes]:
        """Every message delivered to `address` (a configured mailbox), oldest first."""
        base = self._maildir(address)
        files = []
        for sub in ("new", "cur"):
            d = base / sub
            if d.is_dir():
                files.extend(p for p in d.iterdir() if p.is_file())
        files.sort(key=lambda p: (p.stat().st_mtime, p.name))
        return [p.read_bytes() for p in files]

    def wait_messages(self, address: str, count: int = 1, timeout: float = 30) -> list[bytes]:
        """Waits until `count` messages are in the Maildir of `address`."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.maildir_messages(address)
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(got)} of {count} messages for {address} arrived within {timeout}s:\n"
                    f"{self.log_tail()}")
            time.sleep(0.1)

    # -- the relay's own queue ----------------------------------------------------
    _QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")

    def queued(self) -> int:
        """Messages in this Postfix's queue: received (or being received) and
        not yet delivered. An smtpd transaction holds an `incoming` file from
        MAIL FROM until it is accepted or aborted."""
        n = 0
        for q in self._QUEUES:
            for _dirpath, _dirs, files in os.walk(self.root / "queue" / q):
                n += len(files)
        return n

    def wait_queue_empty(self, timeout: float = 60) -> None:
        """Waits until every message this Postfix took has been delivered
        (and every aborted transaction removed)."""
        deadline = time.monotonic() + timeout
        while self.queued():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.queued()} messages still in the relay's queue after "
                                     f"{timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def log(self) -> str:
        try:
            return (self.root / "log" / "postfix.log").read_text(errors="replace")
        except (OSError, TypeError):
            return ""

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def auth_log(self) -> str:
        try:
            return (self.root / "dovecot.log").read_text(errors="replace")
        except (OSError, TypeError):
            return ""

    # -- a [relay] section for the gateway ----------------------------------------
    def relay_config(self, security: str = "starttls", auth: bool = True, **over) -> dict:
        """A [relay] table for this instance: STARTTLS on the submission port
        (or "tls" on smtps, "none" on the plain port), the private CA, and the
        SASL user with its password in PASSWORD_ENV (unless auth=False)."""
        port = {"starttls": self.submission_port, "tls": self.smtps_port,
                "none": self.plain_port}[security]
        r = {"host": "127.0.0.1", "port": port, "security": security, "ca_file": self.ca_file,
             "connect_timeout": "10s", "command_timeout": "30s"}
        if security == "none":
            r["allow_insecure"] = True
        if auth:
            r.update(user=USER, password_env=PASSWORD_ENV)
        r.update(over)
        return {k: v for k, v in r.items() if v is not None}


@pytest.fixture(scope="module")
def postfix_relay():
    """A running private Postfix relay, shared by a module's tests (each test
    that stops it or refuses recipients must undo that)."""
    p = Postfix().start()
    yield p
    p.close()
