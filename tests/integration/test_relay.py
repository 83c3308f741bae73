"""`mailgate test-relay` against a real Postfix relay (tests/integration/postfix.py):
STARTTLS verified with the private CA, implicit TLS, SASL AUTH through
Dovecot, a test message that really arrives in the recipient's Maildir with
the gateway's headers, and each way it can fail named: tls, auth, refused,
connect. Plus check-config on the [relay] keys."""

from __future__ import annotations

import base64
import email
import email.policy
import os
import re
import socket
import time

import pytest

from dovecot import run_command
from postfix import PASSWORD, PASSWORD_ENV, USER, postfix_relay  # noqa: F401 - fixture

ALICE = "alice@relay.test"
BOB = "bob@relay.test"


def gateway(make_gateway, relay: dict | None, password: str | None = PASSWORD):
    cfg = {} if relay is None else {"relay": relay}
    env = {PASSWORD_ENV: password} if password is not None else {}
    return make_gateway(cfg, env=env, start=False)


def test_relay(make_gateway, relay: dict | None, *args, password: str | None = PASSWORD,
               env: dict | None = None):
    g = gateway(make_gateway, relay, password)
    r = run_command(g, "test-relay", *args, env=env)
    return g, r, r.stdout + r.stderr


test_relay.__test__ = False  # a helper, not a test


def last_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def test_starttls_with_the_private_ca_and_auth(make_gateway, postfix_relay):
    _, r, out = test_relay(make_gateway, postfix_relay.relay_config("starttls"))
    assert r.returncode == 0, out
    assert last_line(out) == "OK", out
    assert "greeting: 220 relay.localhost ESMTP mailgate-test-relay" in out, out
    assert re.search(r"^tls: TLSv1_[23]", out, re.M), out
    # AUTH is offered only after STARTTLS (smtpd_tls_auth_only): we said EHLO again.
    assert "AUTH PLAIN LOGIN" in out, out
    assert f"auth: accepted for {USER}" in out, out
    assert PASSWORD not in out
    # Postfix saw it that way too: EHLO twice, STARTTLS, one AUTH, QUIT.
    # (smtpd logs the disconnect after our QUIT returned: wait for the line.)
    pattern = re.compile(r"postfix/submission/smtpd\[\d+\]: disconnect from \S+ "
                         r"ehlo=2 starttls=1 auth=1 quit=1 commands=5")
    deadline = time.monotonic() + 10
    while not pattern.search(postfix_relay.log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pattern.search(postfix_relay.log()), postfix_relay.log_tail()


def test_implicit_tls(make_gateway, postfix_relay):
    _, r, out = test_relay(make_gateway, postfix_relay.relay_config("tls"))
    assert r.returncode == 0, out
    assert "tls: TLSv1_" in out and f"auth: accepted for {USER}" in out, out
    assert last_line(out) == "OK", out


def test_without_the_ca_the_certificate_is_refused(make_gateway, postfix_relay):
    for security in ("starttls", "tls"):
        _, r, out = test_relay(make_gateway, postfix_relay.relay_config(security, ca_file=None))
        assert r.returncode == 1, out
        assert last_line(out).startswith("FAILED (tls): "), out
        assert "UnknownIssuer" in out or "certificate" in out, out
        assert "auth: accepted" not in out, out


def test_starttls_required_but_not_offered(make_gateway, postfix_relay):
    """The plain port offers no STARTTLS: never fall back to plain text."""
    relay = postfix_relay.relay_config("starttls", auth=False, port=postfix_relay.plain_port)
    _, r, out = test_relay(make_gateway, relay)
    assert r.returncode == 1, out
    assert last_line(out).startswith("FAILED (tls): the relay does not offer STARTTLS"), out


def test_plain_relay_when_allowed(make_gateway, postfix_relay):
    _, r, out = test_relay(make_gateway, postfix_relay.relay_config("none", auth=False),
                           "--to", ALICE)
    assert r.returncode == 0, out
    assert "tls:" not in out, out
    assert last_line(out) == "OK", out


@pytest.mark.parametrize("log", ["trace", "debug", "mail_send=trace,rustls=trace,mailgate=trace"])
def test_the_password_is_in_no_log(make_gateway, postfix_relay, log):
    """AUTH PLAIN sends base64("\\0user\\0password"): neither it nor the password
    appears, whatever MAILGATE_LOG enables, on a session that delivers."""
    _, r, out = test_relay(make_gateway, postfix_relay.relay_config("starttls"), "--to", ALICE,
                           env={"MAILGATE_LOG": log})
    assert r.returncode == 0, out
    assert "relay session ready" in r.stderr, "the log level did not reach the transport"
    plain = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    login = base64.b64encode(PASSWORD.encode()).decode()
    for secret in (PASSWORD, plain, login, plain[:-4]):
        assert secret not in out, f"{secret!r} in the output"


def test_wrong_password(make_gateway, postfix_relay):
    wrong = "Wrong-relay-pw-123"
    _, r, out = test_relay(make_gateway, postfix_relay.relay_config("starttls"), password=wrong)
    assert r.returncode == 1, out
    assert last_line(out).startswith("FAILED (auth): authentication failed: 535 5.7.8"), out
    assert wrong not in out and PASSWORD not in out, out


def test_password_source_missing(make_gateway, postfix_relay):
    _, r, out = test_relay(make_gateway, postfix_relay.relay_config("starttls"), password=None)
    assert r.returncode == 1, out
    assert last_line(out).startswith("FAILED (config): the environment variable named by "
                                     "relay.password_env is not set"), out
    assert PASSWORD_ENV not in out, out


def test_password_file_must_be_private(make_gateway, postfix_relay, tmp_path):
    pw = tmp_path / "relay.pw"
    pw.write_text(PASSWORD + "\n")
    os.chmod(pw, 0o644)
    relay = postfix_relay.relay_config("starttls", password_env=None, password_file=str(pw))
    _, r, out = test_relay(make_gateway, relay, password=None)
    assert r.returncode == 1, out
    assert "FAILED (config): password file" in out and "chmod 600" in out, out
    os.chmod(pw, 0o600)
    _, r, out = test_relay(make_gateway, relay, password=None)
    assert r.returncode == 0, out
    assert f"auth: accepted for {USER}" in out, out


def test_to_delivers_a_message_with_our_headers(make_gateway, postfix_relay):
    before = len(postfix_relay.maildir_messages(ALICE))
    g, r, out = test_relay(make_gateway, postfix_relay.relay_config("starttls"), "--to", ALICE)
    assert r.returncode == 0, out
    m = re.search(rf"^sent to {re.escape(ALICE)}: (250 2\.0\.0 Ok: queued as (\w+))$", out, re.M)
    assert m, out
    queue_id = m.group(2)
    assert last_line(out) == "OK", out
    raw = postfix_relay.wait_messages(ALICE, before + 1)[-1]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    # The message Postfix queued under the id the command printed.
    assert queue_id in str(msg["Received"]), msg["Received"]
    assert msg["Subject"] == "mailgate relay test"
    assert msg["From"].addresses[0].addr_spec == "support@example.test"
    assert msg["Reply-To"].addresses[0].addr_spec == "support@example.test"
    assert msg["To"].addresses[0].addr_spec == ALICE
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Mailer"].startswith("mailgate/")
    assert re.fullmatch(r"<test\.[0-9a-f]{16}@localhost>", msg["Message-ID"]), msg["Message-ID"]
    assert msg["Return-Path"] == "<support@example.test>", msg["Return-Path"]
    assert "test-relay" in msg.get_content()
    # Sent over TLS, authenticated as our user.
    assert " with ESMTPSA id " in str(msg["Received"]), msg["Received"]
    assert re.search(rf"{queue_id}: client=\S+, sasl_method=(PLAIN|LOGIN), sasl_username={USER}$",
                     postfix_relay.log(), re.M), postfix_relay.log_tail()
    assert PASSWORD not in out
    # Nothing in the store: test-relay opens no database.
    assert not (g.workdir / "data" / "mailgate.redb").exists()


def test_refused_recipient(make_gateway, postfix_relay):
    postfix_relay.refuse(BOB, "550 5.7.1 refused by the test relay's policy")
    try:
        _, r, out = test_relay(make_gateway, postfix_relay.relay_config("starttls"),
                               "--to", BOB)
    finally:
        postfix_relay.refuse(BOB, None)
    assert r.returncode == 1, out
    assert last_line(out) == (f"FAILED (refused): 550 5.7.1 <{BOB}>: Recipient address "
                              "rejected: refused by the test relay's policy"), out
    assert postfix_relay.maildir_messages(BOB) == []


def test_unknown_recipient_is_refused_by_postfix_itself(make_gateway, postfix_relay):
    _, r, out = test_relay(make_gateway, postfix_relay.relay_config("starttls"),
                           "--to", "nobody-here@relay.test")
    assert r.returncode == 1, out
    assert re.match(r"FAILED \(refused\): 550 5\.1\.1 <nobody-here@relay\.test>: "
                    r"Recipient address rejected: User unknown", last_line(out)), out


def test_some_recipients_refused_the_others_get_it(make_gateway, postfix_relay):
    """Per recipient: the accepted ones get the message, the refused ones are
    reported with their own reply (a 5xx and a 4xx here)."""
    postfix_relay.refuse(BOB, "450 4.2.0 come back later")
    before = len(postfix_relay.maildir_messages(ALICE))
    try:
        _, r, out = test_relay(make_gateway, postfix_relay.relay_config("starttls"),
                               "--to", ALICE, "--to", BOB, "--to", "ghost@relay.test")
    finally:
        postfix_relay.refuse(BOB, None)
    assert r.returncode == 1, out
    assert re.search(rf"^sent to {re.escape(ALICE)}: 250 2\.0\.0 Ok: queued as \w+$", out, re.M), out
    assert f"refused {BOB}: 450 4.2.0 <{BOB}>: Recipient address rejected: come back later" \
        in out, out
    assert re.search(r"^refused ghost@relay\.test: 550 5\.1\.1 ", out, re.M), out
    assert last_line(out) == "FAILED (refused): 2 of 3 recipients refused", out
    raw = postfix_relay.wait_messages(ALICE, before + 1)[-1]
    assert b"mailgate relay test" in raw
    assert postfix_relay.maildir_messages(BOB) == []


def test_relay_down(make_gateway, postfix_relay):
    postfix_relay.stop()
    try:
        _, r, out = test_relay(make_gateway, postfix_relay.relay_config("starttls"))
    finally:
        postfix_relay.start()
    assert r.returncode == 1, out
    assert last_line(out).startswith(
        f"FAILED (connect): cannot connect to 127.0.0.1:{postfix_relay.submission_port}: "), out
    assert "refused" in last_line(out).lower(), out


def test_a_relay_that_never_greets_times_out(make_gateway, postfix_relay):
    """The kernel completes the TCP handshake on a listening socket nobody
    accepts from: the greeting never comes, and connect_timeout ends the wait."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        relay = postfix_relay.relay_config("starttls", port=port, connect_timeout="1s")
        _, r, out = test_relay(make_gateway, relay)
    assert r.returncode == 1, out
    assert last_line(out) == "FAILED (timeout): timed out waiting for the greeting", out


def test_no_relay_configured(make_gateway):
    _, r, out = test_relay(make_gateway, None)
    assert r.returncode == 1, out
    assert last_line(out).startswith("FAILED (config): no [relay] section"), out


# ------------------------------------------------------------ check-config ---

def check_config(make_gateway, relay: dict):
    g = gateway(make_gateway, relay, password=None)
    r = run_command(g, "check-config")
    return r, r.stdout + r.stderr


def test_check_config_accepts_a_full_relay(make_gateway, postfix_relay):
    r, out = check_config(make_gateway, postfix_relay.relay_config("starttls", helo="gw.example"))
    assert r.returncode == 0, out


@pytest.mark.parametrize("relay, expected", [
    ({"security": "starttls"}, "relay.host: missing"),
    ({"host": "h", "security": "smtps"}, "relay.security: must be \"tls\", \"starttls\" or \"none\""),
    ({"host": "h", "security": "none"}, "relay.security: \"none\" sends mail"),
    ({"host": "h", "port": 0}, "relay.port: invalid port 0"),
    ({"host": "h", "user": "u"}, "relay.password_env: relay.user is set"),
    ({"host": "h", "password_env": "PW"}, "relay.user: missing"),
    ({"host": "h", "user": "u", "password_env": "A", "password_file": "/x"},
     "relay.password_env: set password_env or password_file, not both"),
    ({"host": "h", "ca_file": "/nonexistent/ca.pem"}, "relay.ca_file: file not found"),
    ({"host": "h", "helo": "two words"}, "relay.helo: \"two words\" is not a host name"),
    ({"host": "h", "connect_timeout": "soon"}, "relay.connect_timeout: invalid duration"),
    ({"host": "h", "command_timeout": 0}, "relay.command_timeout: invalid duration"),
    ({"host": "h", "sekurity": "tls"}, "unknown key: relay.sekurity"),
])
def test_check_config_names_the_relay_key(make_gateway, relay, expected):
    r, out = check_config(make_gateway, relay)
    assert r.returncode == 2, out
    assert expected in r.stderr, out


@pytest.mark.parametrize("relay", [
    {"host": "h", "user": "u", "password_env": "Pasted relay s3cret!"},
    {"host": "h", "password": "Pasted relay s3cret!"},
])
def test_check_config_never_shows_a_pasted_password(make_gateway, relay):
    r, out = check_config(make_gateway, relay)
    assert r.returncode == 2, out
    assert "relay.password" in r.stderr, out
    assert "Pasted relay s3cret!" not in out, out
