"""Exactly once, whatever happens: the gateway SIGKILLed at random points of a
1,500-message IMAP import and restarted (against Dovecot, Courier-IMAP and
Cyrus); the same during a move or delete; a UIDVALIDITY change (messages come
back unread under new UIDs); an unparseable and an oversized message in the
middle of the mailbox."""

from __future__ import annotations

import collections
import os
import random
import time

import pytest

from dovecot import (  # noqa: F401 - fixtures
    PROCESSED, REJECTED, dovecot, gateway_with, mailbox, message_count, start_gateway,
    ticket_messages, upstream, wait_until)
from mailmsg import make_msg, new_msgid, strip_brackets

SEEN = "\\Seen"
# Enough that a fast import (a few hundred messages between a restart and
# the next kill) still meets at least three kills on its way.
N_KILL = 1500
KILLS = 5


def test_sigkill_during_import_every_message_exactly_once(make_gateway, imap_server):
    d = imap_server
    mids = [new_msgid() for _ in range(N_KILL)]
    d.append("INBOX", [make_msg(f"crash test {i}", msgid=m) for i, m in enumerate(mids)])
    seed = int(os.environ.get("MAILGATE_TEST_SEED") or time.time_ns() % 1_000_000)
    rng = random.Random(seed)
    print(f"kill points seeded with MAILGATE_TEST_SEED={seed}")

    g = gateway_with(make_gateway, upstream(d, "imap", "tls"), start=False)
    killed_at = []
    for _ in range(KILLS):
        start_gateway(g)
        progress = len(g.tickets())
        if progress >= N_KILL:
            break
        # Kill somewhere between 10 and 90 more messages from here, then a bit later:
        # between commits, during a commit, between commit and upstream mark.
        target = min(progress + rng.randint(10, 90), N_KILL - 1)
        wait_until(lambda: len(g.tickets()) >= target, 120, f"{target} tickets", interval=0.02,
                   g=g, d=d)
        time.sleep(rng.uniform(0, 0.05))
        g.kill()
        killed_at.append(target)
    print(f"SIGKILLed after about {killed_at} tickets")
    assert len(killed_at) >= 3, f"the import finished before 3 kills: {killed_at}"

    if not g.alive():
        start_gateway(g)
    wait_until(lambda: all(f == {SEEN, PROCESSED} for _, f in d.flags()), 180,
               f"all {N_KILL} upstream messages labelled", interval=0.5, g=g, d=d)
    got = collections.Counter(strip_brackets(m["message_id"]) for m in ticket_messages(g))
    twice = {k: v for k, v in got.items() if v > 1}
    missing = set(mids) - set(got)
    extra = set(got) - set(mids)
    assert not twice, f"{len(twice)} Message-IDs stored more than once (seed {seed}): " \
                      f"{list(twice.items())[:5]}"
    assert not missing, f"{len(missing)} messages lost (seed {seed}): {sorted(missing)[:5]}"
    assert not extra, f"unexpected messages: {sorted(extra)[:5]}"
    assert len(g.tickets()) == N_KILL
    assert g.rejections() == []
    flags = d.flags()
    assert len(flags) == N_KILL and all(f == {SEEN, PROCESSED} for _, f in flags)
    assert mailbox(g)["status"] == "ok"


@pytest.mark.parametrize("mode", ["move", "delete"])
def test_sigkill_during_move_or_delete_leaves_nothing_behind(make_gateway, dovecot, mode):
    """after_import = move / delete, killed at random points: every message is
    imported once AND ends moved / deleted, including one whose kill fell
    between the flag STORE and the MOVE / EXPUNGE of its after-import step."""
    d = dovecot
    n = 500
    mids = [new_msgid() for _ in range(n)]
    d.append("INBOX", [make_msg(f"{mode} crash {i}", msgid=m) for i, m in enumerate(mids)])
    seed = int(os.environ.get("MAILGATE_TEST_SEED") or time.time_ns() % 1_000_000)
    rng = random.Random(seed)
    print(f"kill points seeded with MAILGATE_TEST_SEED={seed}")
    over = {"after_import": mode}
    if mode == "move":
        over["processed_folder"] = "INBOX.done"
    g = gateway_with(make_gateway, upstream(d, "imap", "tls", **over), start=False)
    kills = 0
    # Each kill lands in a STORE -> MOVE/EXPUNGE gap with a small chance; 20 of
    # them hit one in most runs. (On correct code this test cannot fail.)
    for _ in range(20):
        start_gateway(g)
        if d.count("INBOX") == 0:
            break
        time.sleep(rng.uniform(0.05, 0.3))
        g.kill()
        kills += 1
    if not g.alive():
        start_gateway(g)
    wait_until(lambda: message_count(g) == n, 120, f"all {n} imported", g=g, d=d)
    for _ in range(2):  # two complete polls after the import
        before = mailbox(g)["last_success"]
        wait_until(lambda: mailbox(g)["last_success"] != before, 30, "another poll", g=g)
    got = collections.Counter(strip_brackets(m["message_id"]) for m in ticket_messages(g))
    assert set(got) == set(mids) and max(got.values()) == 1, f"seed {seed}"
    left = d.flags("INBOX")
    assert not left, (
        f"{len(left)} committed messages were left in INBOX after {kills} kills (seed {seed}), "
        f"never {'moved' if mode == 'move' else 'expunged'}: {left[:5]}")
    if mode == "move":
        assert d.count("INBOX.done") == n


def test_uidvalidity_change_does_not_import_again(make_gateway, dovecot):
    """The folder comes back with a new UIDVALIDITY and every message unread
    (a server migration): nothing is imported twice (Message-ID and content
    dedup) and every message is marked again, processed or rejected."""
    d = dovecot
    mids = [new_msgid() for _ in range(5)]
    raws = [make_msg(f"validity {i}", msgid=m) for i, m in enumerate(mids)]
    raws.insert(2, b"\r\n")  # unparseable, no Message-ID: deduplicated by content
    d.append("INBOX", raws)
    g = gateway_with(make_gateway, upstream(d, "imap", "tls"))
    expected = {uid: {SEEN, PROCESSED} for uid in range(1, 7)}
    expected[3] = {SEEN, PROCESSED, REJECTED}
    wait_until(lambda: dict(d.flags()) == expected, 60, "all 6 marked", g=g, d=d)
    assert message_count(g) == 5 and len(g.rejections()) == 1

    g.stop()
    old = d.uidvalidity("INBOX")
    d.set_uidvalidity("INBOX", old + 1000)
    d.remove_flags("INBOX", f"{SEEN} {PROCESSED} {REJECTED}")
    assert d.uidvalidity("INBOX") == old + 1000
    assert all(f == frozenset() for _, f in d.flags()), d.flags()

    start_gateway(g)
    wait_until(lambda: dict(d.flags()) == expected, 60, "all 6 marked again", g=g, d=d)
    assert message_count(g) == 5, "a new UIDVALIDITY must not import the messages again"
    assert len(g.rejections()) == 1, "nor record the rejection again"
    got = sorted(strip_brackets(m["message_id"]) for m in ticket_messages(g))
    assert got == sorted(mids)
    m = g.metrics()
    assert m.get("mailgate_fetch_messages_total", mailbox="support", outcome="duplicate") == 6
    assert m.get("mailgate_fetch_messages_total", mailbox="support", outcome="imported") == 0
    assert m.get("mailgate_fetch_messages_total", mailbox="support", outcome="rejected") == 0


def test_bad_messages_do_not_block_the_rest(make_gateway, dovecot):
    """An empty message and a 200 KiB one (limit 64 KiB) in the middle: each
    becomes a rejection record with its reason and gets the rejected label;
    all the others are imported."""
    d = dovecot
    mids = [new_msgid() for _ in range(10)]
    raws = [make_msg(f"mixed {i}", msgid=m) for i, m in enumerate(mids)]
    raws[3] = b"\r\n"
    big_body = ("x" * 76 + "\r\n") * (200 * 1024 // 78)
    raws[6] = make_msg("far too big", msgid=mids[6], body=big_body)
    assert len(raws[6]) > 200_000
    d.append("INBOX", raws)
    g = gateway_with(make_gateway, upstream(d, "imap", "tls"),
                     extra={"limits": {"max_message_size": 65536}})

    wait_until(lambda: all(SEEN in f for _, f in d.flags()), 60, "all 10 marked", g=g, d=d)
    flags = dict(d.flags())
    for uid in range(1, 11):
        want = {SEEN, PROCESSED, REJECTED} if uid in (4, 7) else {SEEN, PROCESSED}
        assert flags[uid] == want, (uid, flags[uid])
    good = [m for i, m in enumerate(mids) if i not in (3, 6)]
    got = sorted(strip_brackets(m["message_id"]) for m in ticket_messages(g))
    assert got == sorted(good)
    rej = {r["reason"]: r for r in g.rejections()}
    assert set(rej) == {"unparseable", "oversize"}, list(rej)
    big = rej["oversize"]
    assert big["size"] >= len(raws[6]) - 100 and big["source"] == "imap", big
    assert big["mailbox"] == "support" and big["raw_available"] is False, big
    assert strip_brackets(big["message_id"] or "") == mids[6], \
        "the oversize record keeps the headers it fetched (Message-ID)"
    assert rej["unparseable"]["source"] == "imap"
    m = g.metrics()
    assert m.get("mailgate_fetch_messages_total", mailbox="support", outcome="imported") == 8
    assert m.get("mailgate_fetch_messages_total", mailbox="support", outcome="rejected") == 2
