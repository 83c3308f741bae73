"""A gateway with its submission endpoint on, relaying through the private
Postfix (postfix.py), and the clients the submission tests use.

The module-scoped `relay_pf` is one Postfix with the recipients the tests
need; `sub_gw` is one gateway shared by a module's tests: mailboxes
support (default), sales and billing (billing alone has a send limit of 1
message a minute), every other send limit off, and these accounts:

- crm:     support, reply_to set_when_absent (the default)
- shop:    sales, reply_to force
- monitor: support, reply_to keep
- biller:  billing
- locked:  support, may log in only from NET_OK (127.0.0.77)

The failed-login throttle: 3 failures block a client for 6 s, each failure
answered after 1 s times the client's recent failures. The throttle counts
per client address, so tests that fail logins on purpose connect from their
own loopback address (Linux routes all of 127.0.0.0/8 to lo).

Hashes are made with the reference argon2 library (libargon2) at a low
cost, so the debug build checks a login in milliseconds; the gateway
accepts any argon2id PHC string within its cost caps.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import os
import signal
import smtplib
import socket
import time

import pytest

from harness import Gateway, free_ports
from postfix import PASSWORD as RELAY_PASSWORD, PASSWORD_ENV as RELAY_PASSWORD_ENV, Postfix

ALICE = "alice@relay.test"
BOB = "bob@relay.test"
CAROL = "carol@relay.test"
DAVE = "dave@relay.test"
RELAY_RECIPIENTS = (ALICE, BOB, CAROL, DAVE)

PASSWORDS = {
    "crm": "crm-Pass-1 with spaces",
    "shop": "shop-Pass-2",
    "monitor": "monitor-Pass-3",
    "biller": "biller-Pass-4",
    "locked": "locked-Pass-5",
}
WRONG_PASSWORD = "Wrong-Guess-77"
NET_OK = "127.0.0.77"
FAILURES_PER_IP = 3
BLOCK_S = 6
DELAY_S = 1.0

SUPPORT = "support@example.test"
SALES = "sales@example.test"
BILLING = "billing@example.test"

NO_ACK = {"acknowledgement": {"active": False}}


def argon2id_phc(password: str, salt: bytes) -> str:
    """An argon2id PHC string (m=1024 KiB, t=1, p=1) from libargon2."""
    name = ctypes.util.find_library("argon2") or "libargon2.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        pytest.fail("libargon2 (Debian package libargon2-1) is needed: scripts/install-test-deps.sh",
                    pytrace=False)
    out = ctypes.create_string_buffer(256)
    pw = password.encode()
    lib.argon2id_hash_encoded.argtypes = [
        ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t,
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    rc = lib.argon2id_hash_encoded(1, 1024, 1, pw, len(pw), salt, len(salt), 32, out, len(out))
    assert rc == 0, f"argon2id_hash_encoded: {rc}"
    return out.value.decode()


def accounts() -> list[dict]:
    def acct(user, mailboxes, **extra):
        return {"user": user, "password_hash": argon2id_phc(PASSWORDS[user], os.urandom(16)),
                "mailboxes": mailboxes, **extra}
    return [
        acct("crm", ["support"]),
        acct("shop", ["sales"], reply_to="force"),
        acct("monitor", ["support"], reply_to="keep"),
        acct("biller", ["billing"]),
        acct("locked", ["support"], networks=[f"{NET_OK}/32"]),
    ]


def submission_config(postfix: Postfix, relay: dict | None = None) -> tuple[dict, dict]:
    """(config overrides, submission ports) for a gateway with the accounts above."""
    ports = free_ports(["submission", "submissions"])
    cfg = {
        "relay": relay or postfix.relay_config(),
        "outbound": {"retry_initial": "1s", "messages_per_minute": 0, "bytes_per_5_minutes": 0,
                     "recipients_per_day": 0},
        "mailbox": [
            {"name": "support", "addresses": [SUPPORT], "queue": "Support", "default": True,
             "notify": NO_ACK},
            {"name": "sales", "addresses": [SALES], "queue": "Sales", "notify": NO_ACK},
            {"name": "billing", "addresses": [BILLING], "queue": "Billing", "notify": NO_ACK,
             "send_limits": {"messages_per_minute": 1}},
        ],
        "submission": {
            "listen": f"127.0.0.1:{ports['submission']}",
            "listen_tls": f"127.0.0.1:{ports['submissions']}",
            "connections_per_minute_per_ip": 1000000,
            "auth_failures_per_ip": FAILURES_PER_IP,
            "auth_failure_window": "10m",
            "auth_block": f"{BLOCK_S}s",
            "auth_failure_delay": f"{int(DELAY_S)}s",
            "account": accounts(),
        },
    }
    return cfg, ports


class SubmissionGateway(Gateway):
    """A Gateway that also knows its submission ports."""

    sub_ports: dict = {}

    @property
    def sub_port(self) -> int:
        return self.sub_ports["submission"]

    @property
    def subs_port(self) -> int:
        return self.sub_ports["submissions"]

    def submit_client(self, user: str | None = "crm", password: str | None = None,
                      source: str = "127.0.0.1", implicit: bool = False,
                      timeout: float = 60) -> smtplib.SMTP:
        """smtplib over STARTTLS (or implicit TLS), the certificate verified
        against the gateway's own; logged in unless user is None."""
        ctx = self.tls_context()
        if implicit:
            s = smtplib.SMTP_SSL("127.0.0.1", self.subs_port, local_hostname="crm.client.test",
                                 timeout=timeout, context=ctx, source_address=(source, 0))
        else:
            s = smtplib.SMTP("127.0.0.1", self.sub_port, local_hostname="crm.client.test",
                             timeout=timeout, source_address=(source, 0))
            s.ehlo()
            s.starttls(context=ctx)
        s.ehlo()
        if user is not None:
            s.login(user, password if password is not None else PASSWORDS[user])
        return s

    def submit(self, msg: bytes, mail_from: str = SUPPORT, rcpts=(ALICE,), user: str = "crm",
               **kw) -> tuple[int, str]:
        """One authenticated submission; returns the reply to DATA."""
        with self.submit_client(user, **kw) as s:
            code, text = s.mail(mail_from)
            assert code == 250, f"MAIL FROM:<{mail_from}>: {code} {text!r}"
            for r in rcpts:
                code, text = s.rcpt(r)
                assert code == 250, f"RCPT TO:<{r}>: {code} {text!r}"
            code, text = s.data(msg)
            return code, text.decode()

    def outbound(self, mid) -> dict:
        return self.api(f"/api/v1/outbound/{mid}")

    def wait_outbound(self, mid, states=("sent",), timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            e = self.outbound(mid)
            if e["state"] in states:
                return e
            if time.monotonic() > deadline:
                raise AssertionError(f"outbound {mid} is {e}, not {states}:\n{self.log_tail()}")
            time.sleep(0.1)


def queued_id(text: str) -> int:
    """The outbound id in "2.0.0 Ok: queued as N[ on ticket T]"."""
    assert text.startswith("2.0.0 Ok: queued as "), text
    return int(text.split()[4])


def make_submission_gateway(binary: str, workdir, postfix: Postfix, relay: dict | None = None,
                            env: dict | None = None, start: bool = True) -> SubmissionGateway:
    cfg, ports = submission_config(postfix, relay)
    g = SubmissionGateway(binary, workdir, cfg, env={RELAY_PASSWORD_ENV: RELAY_PASSWORD, **(env or {})},
                          name=workdir.name)
    g.sub_ports = ports
    if start:
        g.start()
        wait_port(g.sub_port)
    return g


def wait_port(port: int, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on 127.0.0.1:{port}"
            time.sleep(0.05)


def stop(g: Gateway):
    if g.alive():
        try:
            g.stop(signal.SIGTERM, timeout=20)
        except AssertionError:
            pass


def find_delivered(postfix: Postfix, address: str, marker: bytes, count: int = 1,
                   timeout: float = 30) -> list[bytes]:
    """Waits until `count` messages holding `marker` are in `address`'s Maildir."""
    deadline = time.monotonic() + timeout
    while True:
        got = [m for m in postfix.maildir_messages(address) if marker in m]
        if len(got) >= count:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(got)} of {count} messages with {marker!r} for {address} "
                                 f"within {timeout}s:\n{postfix.log_tail()}")
        time.sleep(0.1)


def secret_forms(user: str, password: str) -> list[str]:
    """A password as it could leak: plain, and base64 as AUTH PLAIN and LOGIN send it."""
    return [password,
            base64.b64encode(f"\0{user}\0{password}".encode()).decode(),
            base64.b64encode(password.encode()).decode()]


@pytest.fixture(scope="module")
def relay_pf():
    """The private Postfix relay, with the recipients the submission tests use."""
    p = Postfix(mailboxes=RELAY_RECIPIENTS).start()
    yield p
    p.close()


@pytest.fixture(scope="module")
def sub_gw(mailgate_bin, tmp_path_factory, relay_pf):
    """The shared submission gateway, logging at debug (the last test of a
    module may read the whole log for passwords)."""
    g = make_submission_gateway(mailgate_bin, tmp_path_factory.mktemp("subgw"), relay_pf,
                                env={"MAILGATE_LOG": "debug"})
    yield g
    stop(g)
