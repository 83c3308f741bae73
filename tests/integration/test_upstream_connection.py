"""`mailgate test-connection <mailbox>`: what it reports when everything works
(and that it changes nothing; IMAP against Dovecot, Courier-IMAP and Cyrus),
and the kind of each failure it can name (against Dovecot)."""

from __future__ import annotations

import socket

import pytest

from dovecot import (  # noqa: F401 - fixtures
    WRONG_PASSWORD, dovecot, gateway_with, run_command, upstream)
from harness import free_port
from mailmsg import make_msg


def lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.strip()]


def test_imap_ok_report_changes_nothing(make_gateway, imap_server):
    """The folder configured as INBOX/support is reported by the server's own
    name for it (INBOX.support on Dovecot's Maildir++ and Courier)."""
    d = imap_server
    support = d.folder("INBOX", "support")
    d.create_folder(support)
    d.save(support, make_msg("read"))
    d.save(support, make_msg("unread"))
    d.add_flags(support, 1, "\\Seen")
    d.save("INBOX", make_msg("elsewhere"))
    g = gateway_with(make_gateway, upstream(d, "imap", "tls", folder="INBOX/support"), start=False)
    before = d.flags(support)

    r = run_command(g, "test-connection", "support")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    out = lines(r.stdout)
    assert out[0] == f"IMAP localhost:{d.imaps_port} (TLS) as {d.user}", out
    assert f"folder: {support}" in out, out
    assert "messages: 2" in out and "unread: 1" in out, out
    caps = [ln for ln in out if ln.startswith("capabilities: ")]
    assert caps and "IMAP4rev1" in caps[0].split(), out
    assert out[-1] == "OK", out
    assert d.flags(support) == before, "test-connection must not change anything"


def test_pop3_ok_report_changes_nothing(make_gateway, dovecot):
    d = dovecot
    for i in range(2):
        d.save("INBOX", make_msg(f"pop {i}"))
    g = gateway_with(make_gateway, upstream(d, "pop3", "starttls"), start=False)
    r = run_command(g, "test-connection", "support")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    out = lines(r.stdout)
    assert out[0] == f"POP3 localhost:{d.pop3_port} (STARTTLS) as alice", out
    assert "messages: 2" in out and "unread: (POP3 has no flags)" in out, out
    caps = [ln for ln in out if ln.startswith("capabilities: ")]
    assert caps and "UIDL" in caps[0].split(), out
    assert out[-1] == "OK", out
    assert d.count("INBOX") == 2


@pytest.mark.parametrize("kind", ["auth", "tls", "folder", "connect", "timeout", "protocol",
                                  "pop3-auth", "pop3-tls"])
def test_failure_kinds(make_gateway, dovecot, kind):
    """Each kind provoked for real. (dns is not: resolving a name that does not
    exist would query a resolver off this host.)"""
    d = dovecot
    protocol = "pop3" if kind.startswith("pop3-") else "imap"
    expected = kind.removeprefix("pop3-")
    over, password = {}, None
    silent = None
    if expected == "auth":
        password = WRONG_PASSWORD
    elif expected == "tls":
        over["ca_file"] = None  # the private CA is not trusted by the system roots
    elif expected == "folder":
        over["folder"] = "INBOX.nope"
    elif expected == "connect":
        over["port"] = free_port()  # nothing listens there
    elif expected == "timeout":
        # Accepts connections (the kernel does) and never says a word.
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        over.update(port=silent.getsockname()[1], connect_timeout="2s")
    elif expected == "protocol":
        over["port"] = d.pop3s_port  # TLS works, then a POP3 greeting to an IMAP client
    security = "starttls" if kind == "pop3-tls" else "tls"
    up = upstream(d, protocol, security, **over)
    kw = {"password": password} if password else {}
    g = gateway_with(make_gateway, up, start=False, **kw)
    try:
        r = run_command(g, "test-connection", "support")
    finally:
        if silent is not None:
            silent.close()
    assert r.returncode == 1, f"expected exit 1, got {r.returncode}:\n{r.stdout}\n{r.stderr}"
    failed = [ln for ln in lines(r.stdout) if ln.startswith("FAILED (")]
    assert failed and failed[0].startswith(f"FAILED ({expected}): "), r.stdout + r.stderr
    if expected == "folder":
        assert "INBOX.nope" in failed[0]
    assert WRONG_PASSWORD not in r.stdout + r.stderr
