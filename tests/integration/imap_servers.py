"""The `imap_server` fixture: the same upstream test against Dovecot,
Courier-IMAP and Cyrus.

Each server kind is started once per test session (on first use) and each
test gets an account of its own on it (`ImapServer.add_user()`: a fresh user
with an empty INBOX), so tests stay independent without paying a server
start per test. The value is an `imapbase.Account`: the interface of
imapbase.ImapServer (folder() with the server's separator, create_folder,
append, flags, message_ids, count, logins, ca_file, user, imap_port /
imaps_port, has_move, name...) for that user; `upstream(account, ...)` in
dovecot.py makes the gateway's [mailbox.upstream] for it.

The fixtures are made known to every test module by conftest.py.
"""

from __future__ import annotations

import pytest

from courier import Courier
from cyrus import Cyrus
from dovecot import MAILDIR, Dovecot
from imapbase import Account, ImapServer

KINDS = ["dovecot", "courier", "cyrus"]

_FACTORIES = {"dovecot": lambda: Dovecot(MAILDIR), "courier": Courier, "cyrus": Cyrus}


def _alive(server: ImapServer) -> bool:
    return server.proc is not None and server.proc.poll() is None


@pytest.fixture(scope="session")
def imap_server_instances():
    """get(kind) -> the session's running server of that kind (started on
    first use, started again if it died)."""
    running: dict[str, ImapServer] = {}

    def get(kind: str) -> ImapServer:
        server = running.get(kind)
        if server is not None and not _alive(server):
            server.stop()
            server = None
        if server is None:
            server = _FACTORIES[kind]().start()
            running[kind] = server
        return server

    yield get
    for server in running.values():
        server.stop()


@pytest.fixture(params=KINDS)
def imap_server(request, imap_server_instances) -> Account:
    """A fresh account on a shared Dovecot, Courier or Cyrus (one test per kind)."""
    server = imap_server_instances(request.param)
    account = server.add_user()
    yield account
    if not _alive(server):
        pytest.fail(f"{server.name} died during this test:\n{server.log_tail(40)}",
                    pytrace=False)
