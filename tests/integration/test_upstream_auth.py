"""Upstream credentials: a wrong password pauses the mailbox as auth_failed
after auth_failure_limit tries (and then no more logins), a manual
`mailgate sync` with the password typed on stdin or POST .../resume clears
it; password files must be private; security = "none" needs allow_insecure."""

from __future__ import annotations

import copy
import os
import time

from dovecot import (  # noqa: F401 - fixtures
    PASSWORD, PASSWORD_ENV, PROCESSED, WRONG_PASSWORD, dovecot, gateway_with, labelled, mailbox,
    message_count, parse_synced, run_command, ticket_messages, upstream, wait_until)
from harness import to_toml
from mailmsg import make_msg, new_msgid, strip_brackets

# Longer than the wait before a 4th try would come if the mailbox were not
# paused (poll_interval 1s x 2^(3-1) = 4 s, plus Dovecot's ~2 s failure delay).
QUIET_WINDOW = 8.0


def wait_auth_failed(g, d):
    wait_until(lambda: mailbox(g)["status"] == "auth_failed", 60,
               'status "auth_failed"', g=g, d=d)


def assert_paused_after_three(g, d):
    mb = mailbox(g)
    assert mb["status"] == "auth_failed", mb
    assert mb["auth_failures"] == 3, mb
    assert mb["last_error_kind"] == "auth", mb
    assert mb["last_error"] and mb["last_error_at"], mb
    assert mb["last_success"] is None, mb
    m = g.metrics()
    assert m.get("mailgate_mailbox_status", mailbox="support", status="auth_failed") == 1
    assert m.get("mailgate_mailbox_status", mailbox="support", status="ok") == 0
    assert m.get("mailgate_fetch_errors_total", mailbox="support", kind="auth") == 3
    assert d.auth_failures() == 3, f"Dovecot saw {d.auth_failures()} failed logins:\n{d.log_tail()}"


def test_wrong_password_pauses_then_sync_with_typed_password(make_gateway, dovecot):
    d = dovecot
    mid = new_msgid()
    d.save("INBOX", make_msg("waiting behind a wrong password", msgid=mid))
    g = gateway_with(make_gateway, upstream(d, "imap", "tls"), password=WRONG_PASSWORD)
    wait_auth_failed(g, d)
    assert_paused_after_three(g, d)

    # Paused: no further login attempts (the provider must not lock the account).
    time.sleep(QUIET_WINDOW)  # an observation window, not a wait for something to happen
    assert d.auth_failures() == 3, f"logins continued after auth_failed:\n{d.log_tail()}"
    assert mailbox(g)["auth_failures"] == 3 and mailbox(g)["status"] == "auth_failed"
    assert message_count(g) == 0

    # `mailgate sync` while the server runs: the password typed on stdin (a
    # config naming no password source), the server does the sync.
    cfg = copy.deepcopy(g.config)
    del cfg["mailbox"][0]["upstream"]["password_env"]
    prompt_config = g.workdir / "prompt.toml"
    prompt_config.write_text(to_toml(cfg))
    r = run_command(g, "sync", "support", config=str(prompt_config), stdin=PASSWORD + "\n",
                    env={PASSWORD_ENV: None})
    assert r.returncode == 0, f"sync failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert "in use by a running mailgate" in r.stdout, r.stdout
    counts = parse_synced(r.stdout)
    assert counts and (counts["listed"], counts["imported"]) == (1, 1), r.stdout
    assert PASSWORD not in r.stdout + r.stderr, "the typed password must not be echoed"

    mb = mailbox(g)
    assert mb["status"] == "ok" and mb["auth_failures"] == 0 and mb["last_success"], mb
    assert [strip_brackets(m["message_id"]) for m in ticket_messages(g)] == [mid]
    assert dict(d.flags()) == {1: {"\\Seen", PROCESSED}}
    m = g.metrics()
    assert m.get("mailgate_mailbox_status", mailbox="support", status="ok") == 1
    assert m.get("mailgate_mailbox_status", mailbox="support", status="auth_failed") == 0
    assert PASSWORD not in g.log_text() and WRONG_PASSWORD not in g.log_text()


def test_resume_after_fixing_the_password_file(make_gateway, dovecot, tmp_path):
    d = dovecot
    mid = new_msgid()
    d.save("INBOX", make_msg("resume me", msgid=mid))
    pw = tmp_path / "upstream.pw"
    pw.write_text(WRONG_PASSWORD + "\n")
    os.chmod(pw, 0o600)
    up = upstream(d, "imap", "starttls", password_env=None, password_file=str(pw))
    g = gateway_with(make_gateway, up, password=None)
    wait_auth_failed(g, d)
    assert_paused_after_three(g, d)

    pw.write_text(PASSWORD + "\n")  # fixed, but the paused mailbox does not retry by itself
    r = g.http_json("POST", "/api/v1/mailboxes/support/resume", {})
    assert r.status == 200, r
    body = r.json()
    assert body["status"] == "ok" and body["auth_failures"] == 0, body
    wait_until(lambda: message_count(g) == 1 and all(labelled(f) for _, f in d.flags()), 60,
               "the message imported after resume", g=g, d=d)
    assert [strip_brackets(m["message_id"]) for m in ticket_messages(g)] == [mid]
    mb = mailbox(g)
    assert mb["status"] == "ok" and mb["last_success"], mb
    assert g.metrics().get("mailgate_mailbox_status", mailbox="support", status="ok") == 1
    assert g.http_json("POST", "/api/v1/mailboxes/nope/resume", {}).status == 404
    later = new_msgid()
    d.save("INBOX", make_msg("after resume", msgid=later))
    wait_until(lambda: message_count(g) == 2, 30, "polling to go on after resume", g=g, d=d)


def test_sync_with_fixed_password_file_clears_auth_failed_and_polling_resumes(
        make_gateway, dovecot, tmp_path):
    """After auth_failed, a successful `mailgate sync` (the password file fixed
    meanwhile) clears the pause: the background polling picks up new mail again."""
    d = dovecot
    first, later = new_msgid(), new_msgid()
    d.save("INBOX", make_msg("before the fix", msgid=first))
    pw = tmp_path / "upstream.pw"
    pw.write_text(WRONG_PASSWORD + "\n")
    os.chmod(pw, 0o600)
    up = upstream(d, "pop3", "tls", password_env=None, password_file=str(pw))
    g = gateway_with(make_gateway, up, password=None)
    wait_auth_failed(g, d)
    assert_paused_after_three(g, d)
    # Let the worker settle in its paused state (as it would be when an
    # operator comes by later); still no more logins meanwhile.
    time.sleep(QUIET_WINDOW)  # an observation window, not a wait for something to happen
    assert d.auth_failures() == 3, f"logins continued after auth_failed:\n{d.log_tail()}"

    pw.write_text(PASSWORD + "\n")
    r = run_command(g, "sync", "support")
    assert r.returncode == 0, f"sync failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    counts = parse_synced(r.stdout)
    assert counts and (counts["listed"], counts["imported"]) == (1, 1), r.stdout
    mb = mailbox(g)
    assert mb["status"] == "ok" and mb["auth_failures"] == 0, mb

    d.save("INBOX", make_msg("after the fix", msgid=later))
    wait_until(lambda: message_count(g) == 2, 30,
               "the background poll to import new mail after the successful sync", g=g, d=d)
    assert sorted(strip_brackets(m["message_id"]) for m in ticket_messages(g)) == \
        sorted([first, later])


def test_foreground_sync_with_typed_password(make_gateway, dovecot):
    """No server running: `mailgate sync` opens the database itself; with no
    password source configured it reads one line from stdin."""
    d = dovecot
    mid = new_msgid()
    d.save("INBOX", make_msg("typed", msgid=mid))
    g = gateway_with(make_gateway, upstream(d, "imap", "tls", password_env=None),
                     password=None, start=False)
    r = run_command(g, "sync", "support", stdin="")
    assert r.returncode == 1 and "no password typed" in r.stderr, (r.returncode, r.stderr)
    r = run_command(g, "sync", "support", stdin=WRONG_PASSWORD + "\n")
    assert r.returncode == 1, r
    assert "sync of support failed (auth)" in r.stderr, r.stderr
    assert WRONG_PASSWORD not in r.stdout + r.stderr
    assert dict(d.flags()) == {1: frozenset()}
    r = run_command(g, "sync", "support", stdin=PASSWORD + "\n")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert "in use by a running mailgate" not in r.stdout
    assert parse_synced(r.stdout) == {"name": "support", "listed": 1, "imported": 1,
                                      "rejected": 0, "duplicates": 0, "resumed": 0}, r.stdout
    assert dict(d.flags()) == {1: {"\\Seen", PROCESSED}}
    g.start()
    assert [strip_brackets(m["message_id"]) for m in ticket_messages(g)] == [mid]
    assert mailbox(g)["imported"] == 1


def test_upstream_error_is_reported_and_recovers(make_gateway, dovecot):
    """A missing folder: status "error" with kind "folder" in the API and the
    metrics, retried (with backoff) until the folder exists, then ok."""
    d = dovecot
    g = gateway_with(make_gateway, upstream(d, "imap", "tls", folder="INBOX.later"))
    # The first sync runs right after the start; wait for its outcome.
    wait_until(lambda: mailbox(g)["status"] == "error", 30, 'status "error"', g=g)
    mb = mailbox(g)
    assert mb["status"] == "error" and mb["last_error_kind"] == "folder", mb
    assert "INBOX.later" in mb["last_error"], mb
    m = g.metrics()
    assert m.get("mailgate_fetch_errors_total", mailbox="support", kind="folder") >= 1
    assert m.get("mailgate_mailbox_status", mailbox="support", status="error") == 1
    d.create_folder("INBOX.later")
    mid = new_msgid()
    d.save("INBOX.later", make_msg("now it exists", msgid=mid))
    wait_until(lambda: message_count(g) == 1, 60, "the retry after the folder appeared", g=g, d=d)
    wait_until(lambda: mailbox(g)["status"] == "ok", 30, 'status "ok" again', g=g)
    assert g.metrics().get("mailgate_mailbox_status", mailbox="support", status="error") == 0


def test_password_file_readable_by_others_is_refused(make_gateway, dovecot, tmp_path):
    d = dovecot
    d.save("INBOX", make_msg("not with that file", msgid=new_msgid()))
    pw = tmp_path / "upstream.pw"
    pw.write_text(PASSWORD + "\n")
    os.chmod(pw, 0o644)
    up = upstream(d, "imap", "tls", password_env=None, password_file=str(pw))
    g = gateway_with(make_gateway, up, password=None)

    wait_until(lambda: mailbox(g)["status"] == "error", 30, 'status "error"', g=g)
    mb = mailbox(g)
    assert mb["status"] == "error" and mb["last_error_kind"] == "password", mb
    assert str(pw) in mb["last_error"] and "chmod 600" in mb["last_error"], mb
    assert g.metrics().get("mailgate_fetch_errors_total", mailbox="support", kind="password") >= 1
    for cmd in ("sync", "test-connection"):
        r = run_command(g, cmd, "support")
        assert r.returncode == 1, f"{cmd}: {r.returncode}\n{r.stdout}\n{r.stderr}"
        out = r.stdout + r.stderr
        assert "readable by group or others" in out and "chmod 600" in out, out
        assert PASSWORD not in out
    assert d.logins() == 0 and d.auth_failures() == 0, \
        f"no login may be attempted with a password from a public file:\n{d.log_tail()}"
    assert dict(d.flags()) == {1: frozenset()}
    assert message_count(g) == 0


def test_security_none_needs_allow_insecure(make_gateway, dovecot):
    d = dovecot
    g = gateway_with(make_gateway, upstream(d, "imap", "none", ca_file=None), start=False)
    r = run_command(g, "check-config")
    assert r.returncode == 2, f"check-config accepted security = \"none\":\n{r.stdout}{r.stderr}"
    assert "mailbox[0].upstream.security" in r.stderr and "allow_insecure" in r.stderr, r.stderr
    r = run_command(g, "test-connection", "support")
    assert r.returncode == 2, r
    assert "allow_insecure" in r.stderr

    g2 = gateway_with(make_gateway, upstream(d, "imap", "none", ca_file=None,
                                             allow_insecure=True), start=False)
    r = run_command(g2, "check-config")
    assert r.returncode == 0, r.stderr
    r = run_command(g2, "test-connection", "support")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert "insecure" in r.stdout.splitlines()[0] and r.stdout.splitlines()[-1] == "OK", r.stdout
