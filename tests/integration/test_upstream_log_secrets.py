"""No log filter prints the upstream password: `mailgate test-connection`
and `mailgate serve` (background sync, IDLE, POST .../sync with the password
in the body) against the real Dovecot, with every MAILGATE_LOG a user might
try to see the protocol traffic. The password is looked for in plain and as
the base64 of a SASL PLAIN token, in stdout, stderr and the API answers."""

from __future__ import annotations

import base64

import pytest

from dovecot import (  # noqa: F401 - fixtures
    PASSWORD, PASSWORD_ENV, USER, WRONG_PASSWORD, dovecot, gateway_with, mailbox,
    mailbox_config, message_count, run_command, upstream, wait_until)
from mailmsg import make_msg

FILTERS = [
    "trace",
    "debug",
    "async_imap=trace",
    "async_imap::imap_stream=trace",
    "mailgate=trace,async_imap=trace",
    "imap_proto=trace",
    "tokio=trace,trace",
]

# Filters under which our own debug line "IMAP login" must show: proof that
# the filter was in force while the login happened.
VERBOSE = {"trace", "debug", "mailgate=trace,async_imap=trace", "tokio=trace,trace"}


def secret_forms(password: str) -> list[str]:
    plain = base64.b64encode(f"\0{USER}\0{password}".encode()).decode()
    return [password, plain]


def assert_absent(text: str, password: str, what: str):
    for form in secret_forms(password):
        assert form not in text, f"{what} shows the password ({form!r}):\n{text[-3000:]}"


@pytest.mark.parametrize("log_filter", FILTERS)
def test_test_connection_never_prints_the_password(make_gateway, dovecot, log_filter):
    d = dovecot
    d.save("INBOX", make_msg("one"))
    for protocol, security in [("imap", "tls"), ("imap", "starttls"),
                               ("pop3", "tls"), ("pop3", "starttls")]:
        g = gateway_with(make_gateway, upstream(d, protocol, security), start=False,
                         env={"MAILGATE_LOG": log_filter})
        r = run_command(g, "test-connection", "support")
        assert r.returncode == 0, f"{protocol}/{security}:\n{r.stdout}\n{r.stderr}"
        assert r.stdout.splitlines()[-1] == "OK", r.stdout
        assert_absent(r.stdout + r.stderr, PASSWORD, f"test-connection {protocol}/{security} "
                                                     f"with MAILGATE_LOG={log_filter}")
        if log_filter in VERBOSE and protocol == "imap":
            assert "IMAP login" in r.stderr, f"MAILGATE_LOG={log_filter} not in force:\n{r.stderr}"

    # A wrong password is a secret as well.
    g = gateway_with(make_gateway, upstream(d, "imap", "starttls"), start=False,
                     password=WRONG_PASSWORD, env={"MAILGATE_LOG": log_filter})
    r = run_command(g, "test-connection", "support")
    assert r.returncode == 1 and "FAILED (auth)" in r.stdout, f"{r.stdout}\n{r.stderr}"
    assert_absent(r.stdout + r.stderr, WRONG_PASSWORD, f"a failed test-connection with "
                                                       f"MAILGATE_LOG={log_filter}")


@pytest.mark.parametrize("log_filter", FILTERS)
def test_serve_and_api_sync_never_log_the_password(make_gateway, dovecot, log_filter):
    d = dovecot
    # Separate folders: Dovecot marks what POP3 retrieves as \Seen.
    d.create_folder("INBOX.support")
    d.save("INBOX.support", make_msg("pulled over IMAP under a verbose log"))
    d.save("INBOX", make_msg("pulled over POP3 under a verbose log"))
    imap = upstream(d, "imap", "starttls", idle=True, folder="INBOX.support")
    pop3 = upstream(d, "pop3", "tls", after_import="keep")
    g = gateway_with(make_gateway, mailboxes=[mailbox_config(imap, "support"),
                                              mailbox_config(pop3, "sales")],
                     env={"MAILGATE_LOG": log_filter})
    # Both mailboxes imported the message (the IMAP worker then sits in IDLE).
    wait_until(lambda: message_count(g) == 2, 60, "both upstreams imported", g=g, d=d)

    answers = []
    for name in ("support", "sales"):
        r = g.http_json("POST", f"/api/v1/mailboxes/{name}/sync", {"password": PASSWORD})
        assert r.status == 200, (name, r.status, r.body)
        answers.append(r.body.decode(errors="replace"))
    # A wrong password in the body: refused by Dovecot, not logged, not echoed.
    r = g.http_json("POST", "/api/v1/mailboxes/sales/sync", {"password": WRONG_PASSWORD})
    assert r.status == 502 and r.json()["kind"] == "auth", (r.status, r.body)
    answers.append(r.body.decode(errors="replace"))
    # A body of the wrong shape: serde would quote the value; the answer does not.
    r = g.http("POST", "/api/v1/mailboxes/support/sync", token=g.token,
               body=f'"{WRONG_PASSWORD}"'.encode(), headers={"Content-Type": "application/json"})
    assert r.status == 400, (r.status, r.body)
    answers.append(r.body.decode(errors="replace"))
    assert mailbox(g, "support")["status"] == "ok"

    assert g.stop() == 0
    log = g.log_text() + (g.workdir / f"stdout.{g.starts}.log").read_text(errors="replace")
    if log_filter in VERBOSE:
        assert "IMAP login" in log, f"MAILGATE_LOG={log_filter} not in force:\n{log[-2000:]}"
    for password in (PASSWORD, WRONG_PASSWORD):
        assert_absent(log, password, f"the serve log with MAILGATE_LOG={log_filter}")
        assert_absent("\n".join(answers), password, "an API answer")
