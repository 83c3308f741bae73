"""Pulling from an IMAP upstream: implicit TLS and STARTTLS verified through
ca_file, only unread mail, each after-import mode with the exact upstream
result, folder selection (not recursive, both separator spellings), the
mailboxes API and the fetch metrics, each against Dovecot, Courier-IMAP and
Cyrus alike (the `imap_server` fixture, imap_servers.py); folder selection on
Dovecot's LAYOUT=fs too, IDLE and active = false against Dovecot."""

from __future__ import annotations

import json

import pytest

from dovecot import (  # noqa: F401 - fixtures
    LAYOUT_FS, PROCESSED, dovecot, dovecot_factory, gateway_with,
    labelled, mailbox, mailbox_config, message_count, parse_synced, run_command, ticket_messages,
    upstream, wait_until)
from mailmsg import make_msg, new_msgid, strip_brackets

SEEN = "\\Seen"


def mids_of(messages) -> list[str]:
    return sorted(strip_brackets(m["message_id"]) for m in messages)


def test_imaps_label_imports_only_unread_and_reports_it(make_gateway, imap_server):
    """Implicit TLS to "localhost" verified with the private CA; the default
    after-import (label): exactly \\Seen + Mailgate on what was imported; a
    message already read is neither imported nor touched."""
    d = imap_server
    mids = [new_msgid() for _ in range(3)]
    for i, mid in enumerate(mids):
        d.save("INBOX", make_msg(f"imaps {i}", msgid=mid))
    d.save("INBOX", make_msg("already read", msgid=new_msgid()))
    d.add_flags("INBOX", 4, SEEN)
    # idle left at its default (true): the usual configuration.
    up = upstream(d, "imap", "tls", idle=None)
    g = gateway_with(make_gateway, up)

    wait_until(lambda: mailbox(g)["imported"] == 3, 60, "3 messages imported", g=g, d=d)
    flags = dict(d.flags())
    assert flags == {1: {SEEN, PROCESSED}, 2: {SEEN, PROCESSED}, 3: {SEEN, PROCESSED}, 4: {SEEN}}, \
        "imported messages carry exactly \\Seen + Mailgate; the read one is untouched"

    msgs = ticket_messages(g)
    assert mids_of(msgs) == sorted(mids), "exactly the unread messages became ticket messages"
    assert {m["source"] for m in msgs} == {"imap"}
    assert g.rejections() == []

    mb = mailbox(g)
    assert mb["upstream"] == {
        "protocol": "imap", "host": "localhost", "port": d.imaps_port, "security": "tls",
        "user": d.user, "folder": "INBOX", "after_import": "label", "active": True,
        "poll_interval_seconds": 1,
    }
    assert mb["status"] == "ok", mb
    assert mb["last_success"], mb
    assert mb["auth_failures"] == 0 and mb["last_error"] is None, mb
    assert mb["name"] == "support" and mb["queue"] == "Support" and mb["default"] is True

    listing = g.api("/api/v1/mailboxes")["mailboxes"]
    by_name = {m["name"]: m for m in listing}
    assert set(by_name) == {"support", "sales"}
    assert by_name["support"]["upstream"]["port"] == d.imaps_port
    assert by_name["sales"]["upstream"] is None and by_name["sales"]["status"] == "none"
    assert g.http("GET", "/api/v1/mailboxes/nope").status == 404

    m = g.metrics()
    assert m.get("mailgate_fetch_messages_total", mailbox="support", outcome="imported") == 3
    assert m.get("mailgate_fetch_messages_total", mailbox="support", outcome="rejected") == 0
    assert m.get("mailgate_fetch_last_success_timestamp_seconds", mailbox="support") > 1e9
    assert m.get("mailgate_mailbox_status", mailbox="support", status="ok") == 1
    for s in ("paused", "auth_failed", "error"):
        assert m.get("mailgate_mailbox_status", mailbox="support", status=s) == 0, s


def test_imap_starttls_custom_keywords_and_rejected_label(make_gateway, imap_server):
    """STARTTLS on the plain port, verified; processed_keyword/rejected_keyword
    configurable; an unparseable message gets the rejected keyword too."""
    d = imap_server
    good = [new_msgid(), new_msgid()]
    d.append("INBOX", [make_msg("one", msgid=good[0]), b"\r\n", make_msg("three", msgid=good[1])])
    up = upstream(d, "imap", "starttls", processed_keyword="Imported", rejected_keyword="Refused")
    g = gateway_with(make_gateway, up)

    wait_until(lambda: all(SEEN in f for _, f in d.flags()), 60, "all 3 marked", g=g, d=d)
    assert dict(d.flags()) == {1: {SEEN, "Imported"}, 2: {SEEN, "Imported", "Refused"},
                               3: {SEEN, "Imported"}}
    assert mids_of(ticket_messages(g)) == sorted(good)
    rej = g.rejections()
    assert [(r["reason"], r["source"], r["mailbox"]) for r in rej] == [
        ("unparseable", "imap", "support")], rej
    assert mailbox(g)["upstream"]["security"] == "starttls"


def test_imap_move_to_processed_and_rejected_folders(make_gateway, imap_server):
    """after_import = move (MOVE on Dovecot and Cyrus; COPY + STORE \\Deleted +
    UID EXPUNGE on Courier, which has no MOVE): the folders are created with
    the server's separator, each message is there once, INBOX is empty."""
    d = imap_server
    good = [new_msgid(), new_msgid()]
    d.append("INBOX", [make_msg("keep me", msgid=good[0]), b"\r\n",
                       make_msg("me too", msgid=good[1])])
    processed_folder, rejected_folder = d.folder("INBOX", "Processed"), d.folder("INBOX", "Rejected")
    up = upstream(d, "imap", "tls", after_import="move",
                  processed_folder=processed_folder, rejected_folder=rejected_folder)
    g = gateway_with(make_gateway, up)

    wait_until(lambda: d.count("INBOX") == 0, 60, "INBOX emptied by the moves", g=g, d=d)
    assert processed_folder in d.folders() and rejected_folder in d.folders(), d.folders()
    processed = d.message_ids(processed_folder)
    assert sorted(processed.values()) == sorted(good)
    assert d.count(rejected_folder) == 1
    for folder in (processed_folder, rejected_folder):
        assert all(SEEN in f for _, f in d.flags(folder)), (folder, d.flags(folder))
    assert mids_of(ticket_messages(g)) == sorted(good)
    assert [r["reason"] for r in g.rejections()] == ["unparseable"]
    assert mailbox(g)["upstream"]["after_import"] == "move"
    # The target folders are not read: nothing more is imported from them.
    first = mailbox(g)["last_success"]
    wait_until(lambda: mailbox(g)["last_success"] != first, 30, "one more sync", g=g)
    assert message_count(g) == 2


def test_imap_delete_after_import(make_gateway, imap_server):
    """after_import = delete: imported, then expunged (count() lists every
    message of the folder, those flagged \\Deleted too)."""
    d = imap_server
    mids = [new_msgid() for _ in range(3)]
    d.append("INBOX", [make_msg(f"delete {i}", msgid=m) for i, m in enumerate(mids)])
    g = gateway_with(make_gateway, upstream(d, "imap", "tls", after_import="delete"))
    wait_until(lambda: message_count(g) == 3 and d.count("INBOX") == 0, 60,
               "3 imported and expunged upstream", g=g, d=d)
    assert mids_of(ticket_messages(g)) == sorted(mids)
    assert d.flags("INBOX") == [], "deleted messages are expunged, not only flagged \\Deleted"


@pytest.mark.parametrize("spelling", ["INBOX.support", "INBOX/support"])
def test_folder_selection_is_not_recursive(make_gateway, imap_server, spelling):
    """Only the configured folder is read: not INBOX, not its subfolder; either
    separator spelling works whatever the server's separator ('.' on Dovecot's
    Maildir++ and Courier, '/' on Cyrus). Pulled with the foreground
    `mailgate sync` (no server running)."""
    check_folder_selection(make_gateway, imap_server, spelling)


@pytest.mark.parametrize("spelling", ["INBOX.support", "INBOX/support"])
def test_folder_selection_on_dovecot_layout_fs(make_gateway, dovecot_factory, spelling):
    """The same on a Dovecot with LAYOUT=fs (separator '/')."""
    check_folder_selection(make_gateway, dovecot_factory(LAYOUT_FS), spelling)


def check_folder_selection(make_gateway, d, spelling):
    support = d.folder("INBOX", "support")
    sub = d.folder("INBOX", "support", "sub")
    d.create_folder(support)
    d.create_folder(sub)
    wanted = [new_msgid(), new_msgid()]
    d.append("INBOX", [make_msg("in the inbox")])
    d.append(support, [make_msg(f"support {i}", msgid=m) for i, m in enumerate(wanted)])
    d.append(sub, [make_msg("in the subfolder")])

    g = gateway_with(make_gateway, upstream(d, "imap", "tls", folder=spelling,
                                            poll_interval="1h"), start=False)
    r = run_command(g, "sync", "support")
    assert r.returncode == 0, f"mailgate sync failed:\n{r.stdout}\n{r.stderr}"
    counts = parse_synced(r.stdout)
    assert counts == {"name": "support", "listed": 2, "imported": 2, "rejected": 0,
                      "duplicates": 0, "resumed": 0}, r.stdout
    assert [f for _, f in d.flags(support)] == [{SEEN, PROCESSED}] * 2
    assert [f for _, f in d.flags("INBOX")] == [frozenset()], "INBOX must not be read"
    assert [f for _, f in d.flags(sub)] == [frozenset()], "the subfolder must not be read"

    g.start()
    msgs = ticket_messages(g)
    assert mids_of(msgs) == sorted(wanted)
    assert {m["source"] for m in msgs} == {"imap"}
    assert mailbox(g)["upstream"]["folder"] == spelling


def test_idle_brings_new_mail_without_waiting_for_the_poll(make_gateway, dovecot):
    """poll_interval 10 minutes, idle = true: a message that arrives after the
    first sync is imported by the IDLE notification, long before the next poll."""
    d = dovecot
    first, second = new_msgid(), new_msgid()
    d.save("INBOX", make_msg("before start", msgid=first))
    g = gateway_with(make_gateway, upstream(d, "imap", "tls", idle=True, poll_interval="10m"))
    wait_until(lambda: message_count(g) == 1, 60, "the first message", g=g, d=d)
    # Wait until the worker sits in IDLE (Dovecot logs a second login).
    wait_until(lambda: d.logins() >= 2, 30, "the IDLE session to open", g=g, d=d)
    d.save("INBOX", make_msg("while idling", msgid=second))
    wait_until(lambda: message_count(g) == 2, 60, "the message that arrived during IDLE",
               g=g, d=d)
    assert mids_of(ticket_messages(g)) == sorted([first, second])
    wait_until(lambda: all(labelled(f) for _, f in d.flags()), 30, "both labelled", g=g, d=d)


def test_inactive_mailbox_is_paused_and_api_sync(make_gateway, dovecot):
    """active = false: status "paused", nothing pulled, while another mailbox of
    the same gateway keeps syncing. POST /api/v1/mailboxes/{name}/sync syncs
    now and reports the counts."""
    d = dovecot
    d.create_folder("INBOX.sales")
    paused_mid, sales_mid = new_msgid(), new_msgid()
    d.save("INBOX", make_msg("for the paused mailbox", msgid=paused_mid))
    d.save("INBOX.sales", make_msg("for sales", msgid=sales_mid))
    boxes = [
        mailbox_config(upstream(d, "imap", "tls", active=False)),
        mailbox_config(upstream(d, "imap", "tls", folder="INBOX.sales", poll_interval="1h"),
                       "sales"),
    ]
    g = gateway_with(make_gateway, mailboxes=boxes)
    wait_until(lambda: mailbox(g, "sales")["imported"] == 1, 60, "sales imports", g=g, d=d)
    wait_until(lambda: mailbox(g)["status"] == "paused", 30, "support paused", g=g)
    sup = mailbox(g)
    assert sup["upstream"]["active"] is False
    assert sup["imported"] == 0 and sup["last_success"] is None, sup
    assert dict(d.flags("INBOX")) == {1: frozenset()}, "a paused mailbox is not touched"
    assert g.metrics().get("mailgate_mailbox_status", mailbox="support", status="paused") == 1
    assert mids_of(ticket_messages(g)) == [sales_mid]

    # Sync now through the API (sales polls hourly, so this is the API's doing).
    newer = new_msgid()
    d.save("INBOX.sales", make_msg("sync me now", msgid=newer))
    r = g.http_json("POST", "/api/v1/mailboxes/sales/sync", {})
    assert r.status == 200, r
    body = r.json()
    assert (body["listed"], body["imported"], body["rejected"], body["duplicates"]) == \
        (1, 1, 0, 0), body
    assert sorted(mids_of(ticket_messages(g))) == sorted([sales_mid, newer])
    assert g.http_json("POST", "/api/v1/mailboxes/nope/sync", {}).status == 404
    body = json.loads(g.http_json("POST", "/api/v1/mailboxes/sales/sync", {}).body)
    assert body["listed"] == 0, body
