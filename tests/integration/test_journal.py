"""The commit journal: mail acknowledged from the journal before its database
checkpoint survives SIGKILL, is ingested again at the next start under the
same message ids and tickets as its 250 said, and only once."""

import time

from harness import SUPPORT, to_toml
from mailmsg import make_msg, new_msgid


def _send_thread(g, n):
    """n messages, the 2nd.. replying to the 1st; [(Message-ID, outcome)]."""
    first = new_msgid()
    sent = []
    for i in range(n):
        mid = first if i == 0 else new_msgid()
        msg = make_msg(f"journal {i}", msgid=mid, in_reply_to=None if i == 0 else first,
                       body=f"message {i}\r\n" * 10)
        reply = g.send(msg)
        assert reply.code == 250, reply
        sent.append((mid, reply.message()))
    return sent


def _assert_stored_as_acknowledged(g, sent):
    for mid, o in sent:
        stored = g.message(o.id)
        assert stored["message_id"] == mid, f"message {o.id} is not {mid}: {stored}"
        assert g.ticket(stored["ticket_id"])["number"] == o.ticket, (stored, o)


def test_sigkill_before_the_checkpoint_replays_the_journal_once(make_gateway):
    g = make_gateway({"store": {"checkpoint_interval": "1h"}})
    sent = _send_thread(g, 6)
    assert len({o.ticket for _, o in sent}) == 1, "the replies did not thread"
    m = g.metrics()
    assert m.get("mailgate_store_commits_total", durability="journal") == 6, m.text
    assert m.get("mailgate_store_checkpoints_total") == 0, m.text
    journal = g.workdir / "data" / "mailgate.redb.journal"
    assert journal.exists(), list((g.workdir / "data").iterdir())
    g.kill()

    g.start()
    lines, text = g.wait_log("commit journal ingested again")
    assert lines and "messages=6" in lines[0], text
    m = g.metrics()
    assert m.get("mailgate_store_journal_replayed_total") == 6, m.text
    assert m.get("mailgate_store_journal_errors_total") == 0, m.text
    _assert_stored_as_acknowledged(g, sent)
    assert g.store_counts() == (6, 0)
    # Mail after the replay gets ids of its own.
    later = _send_thread(g, 2)
    assert {o.id for _, o in later}.isdisjoint({o.id for _, o in sent})

    g.restart()
    assert "ingesting again" not in g.log_text(), g.log_text()
    assert g.metrics().get("mailgate_store_journal_replayed_total") == 0
    _assert_stored_as_acknowledged(g, sent + later)
    assert g.store_counts() == (8, 0)


def test_an_idle_checkpoint_leaves_nothing_to_replay(make_gateway):
    g = make_gateway({"store": {"checkpoint_interval": "200ms"}})
    sent = _send_thread(g, 3)
    time.sleep(1.5)  # idle past the interval: the writer checkpoints by itself
    m = g.metrics()
    assert m.get("mailgate_store_checkpoints_total") >= 1, m.text
    assert m.get("mailgate_store_checkpoint_seconds_count") >= 1, m.text
    g.kill()
    g.start()
    assert "ingesting again" not in g.log_text(), g.log_text()
    _assert_stored_as_acknowledged(g, sent)


def test_with_the_journal_off_every_commit_is_durable_and_no_journal_is_made(make_gateway):
    g = make_gateway({"store": {"journal": False, "checkpoint_interval": "1h"}})
    sent = _send_thread(g, 3)
    m = g.metrics()
    assert m.get("mailgate_store_commits_total", durability="store") >= 3, m.text
    assert m.get("mailgate_store_commits_total", durability="journal") == 0, m.text
    g.kill()
    g.start()
    assert "ingesting again" not in g.log_text(), g.log_text()
    _assert_stored_as_acknowledged(g, sent)
    assert not (g.workdir / "data" / "mailgate.redb.journal").exists()


def _kill_with_sales_mail_in_the_journal(g):
    """Two messages to sales and one to support acknowledged from the
    journal, then SIGKILL; returns [(Message-ID, outcome, recipient)]."""
    sent = []
    for to in ["sales@example.test", "sales@example.test", "support@example.test"]:
        mid = new_msgid()
        reply = g.send(make_msg(f"for {to}", msgid=mid, to=to), rcpts=(to,))
        assert reply.code == 250, reply
        sent.append((mid, reply.message(), to))
    g.kill()
    return sent


def _restart_with_mailboxes(g, mailboxes):
    g.config["mailbox"] = mailboxes
    g.config_path.write_text(to_toml(g.config))
    g.start()


def test_journaled_mail_for_a_removed_mailbox_goes_where_its_recipients_route_now(make_gateway):
    g = make_gateway({"store": {"checkpoint_interval": "1h"}})
    sent = _kill_with_sales_mail_in_the_journal(g)
    # The sales mailbox is gone; support is the default mailbox.
    _restart_with_mailboxes(g, [dict(SUPPORT)])
    lines, text = g.wait_log("commit journal ingested again")
    assert lines and "messages=3" in lines[0], text
    assert "filed where its recipients route now" in text, text
    for mid, _, _ in sent:
        [t] = [t for t in g.tickets() if any(m["message_id"] == mid for m in g.ticket(t["id"])["messages"])]
        assert t["mailbox"] == "support", t
    assert g.store_counts() == (3, 0)


def test_journaled_mail_no_mailbox_takes_any_more_is_kept_as_a_rejection(make_gateway):
    g = make_gateway({"store": {"checkpoint_interval": "1h"}})
    sent = _kill_with_sales_mail_in_the_journal(g)
    # No default mailbox now: sales@ routes nowhere.
    _restart_with_mailboxes(g, [dict(SUPPORT, default=False)])
    lines, text = g.wait_log("commit journal ingested again")
    assert lines and "messages=3" in lines[0], text
    rejections = g.rejections(reason="mailbox_gone")
    assert len(rejections) == 2, rejections
    for mid, _, to in sent[:2]:
        [r] = [r for r in rejections if r["message_id"] == mid]
        assert r["mailbox"] is None and "sales" in r["detail"], r
        raw = g.raw("rejections", r["id"])
        assert raw.status == 200 and mid.encode() in raw.body, raw
    # The message for support went there as before.
    assert g.store_counts() == (1, 2)
    assert g.metrics().get("mailgate_messages_rejected_total", reason="mailbox_gone") == 2
