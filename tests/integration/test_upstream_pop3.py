"""Pulling from a POP3 upstream (a private Dovecot): STLS on the plain port and
implicit TLS (POP3S), both verified through ca_file; after import delete (the
default: the maildrop is emptied) or keep (UIDL memory decides what is new)."""

from __future__ import annotations

from dovecot import (  # noqa: F401 - fixtures
    dovecot, gateway_with, mailbox, message_count, ticket_messages, upstream, wait_until)
from mailmsg import make_msg, new_msgid, strip_brackets


def mids_of(messages) -> list[str]:
    return sorted(strip_brackets(m["message_id"]) for m in messages)


def test_pop3_stls_delete_is_the_default(make_gateway, dovecot):
    d = dovecot
    mids = [new_msgid() for _ in range(3)]
    for i, mid in enumerate(mids):
        d.save("INBOX", make_msg(f"pop3 {i}", msgid=mid))
    up = upstream(d, "pop3", "starttls")
    g = gateway_with(make_gateway, up)

    wait_until(lambda: message_count(g) == 3 and d.count("INBOX") == 0, 60,
               "3 imported and deleted from the maildrop", g=g, d=d)
    msgs = ticket_messages(g)
    assert mids_of(msgs) == sorted(mids)
    assert {m["source"] for m in msgs} == {"pop3"}
    mb = mailbox(g)
    assert mb["upstream"] == {
        "protocol": "pop3", "host": "localhost", "port": d.pop3_port, "security": "starttls",
        "user": "alice", "folder": "INBOX", "after_import": "delete", "active": True,
        "poll_interval_seconds": 1,
    }
    assert mb["status"] == "ok", mb
    assert g.metrics().get("mailgate_fetch_messages_total", mailbox="support",
                           outcome="imported") == 3


def test_pop3s_keep_imports_each_message_once(make_gateway, dovecot):
    """after_import = keep: messages stay in the maildrop; later polls import
    only what is new (UIDLs already committed are skipped, not re-imported)."""
    d = dovecot
    first = [new_msgid(), new_msgid()]
    for i, mid in enumerate(first):
        d.save("INBOX", make_msg(f"kept {i}", msgid=mid))
    g = gateway_with(make_gateway, upstream(d, "pop3", "tls", after_import="keep"))
    wait_until(lambda: message_count(g) == 2, 60, "the 2 messages", g=g, d=d)
    assert d.count("INBOX") == 2, "keep leaves the messages in the maildrop"

    later = new_msgid()
    d.save("INBOX", make_msg("arrives later", msgid=later))
    wait_until(lambda: message_count(g) == 3, 60, "the new message", g=g, d=d)
    # Two more completed polls: still exactly three messages, nothing counted twice.
    for _ in range(2):
        before = mailbox(g)["last_success"]
        wait_until(lambda: mailbox(g)["last_success"] != before, 30, "another poll", g=g)
    msgs = ticket_messages(g)
    assert mids_of(msgs) == sorted(first + [later])
    assert {m["source"] for m in msgs} == {"pop3"}
    assert d.count("INBOX") == 3
    m = g.metrics()
    assert m.get("mailgate_fetch_messages_total", mailbox="support", outcome="imported") == 3
    assert m.get("mailgate_fetch_messages_total", mailbox="support", outcome="duplicate") == 0
    # A sync with nothing new: the kept messages were committed and need no
    # upstream action, so nothing is "resumed" (marked now) either.
    r = g.http_json("POST", "/api/v1/mailboxes/support/sync", {})
    assert r.status == 200, r
    body = r.json()
    assert (body["imported"], body["rejected"], body["duplicates"]) == (0, 0, 0), body
    assert body["resumed"] == 0, (
        f"kept POP3 messages reported as resumed (marked upstream now) on every poll: {body}")
    assert "already committed; marked upstream" not in g.log_text(), \
        "keep mode logs every kept message as re-marked on every poll"
    mb = mailbox(g)
    assert mb["imported"] == 3 and mb["upstream"]["after_import"] == "keep"
    assert mb["upstream"]["port"] == d.pop3s_port and mb["upstream"]["security"] == "tls"
