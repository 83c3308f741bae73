"""The IMAP puller downloads a chunk of messages with one UID FETCH, submits
their commits together (group commit) and labels them upstream only once
each one's own commit answered. SIGKILLed at random points of a large pull
against Dovecot, many commits in flight each time:

- every message labelled in Dovecot at the moment of a kill is already in
  the store (a labelled message is never listed again: were it not stored,
  it would be lost);
- the ones committed but not yet labelled when it died are labelled by the
  next run through their upstream identity (imap:V:U), not imported again
  (the last run counts no duplicate);
- in the end every message is stored exactly once and labelled.
"""

from __future__ import annotations

import collections
import os
import random
import time

from dovecot import (  # noqa: F401 - fixtures
    PROCESSED, dovecot, gateway_with, labelled, message_count, start_gateway, ticket_messages,
    upstream, wait_until)
from mailmsg import make_msg, new_msgid, strip_brackets

N = 2000
KILLS = 5


def test_sigkill_mid_chunk_loses_nothing_labelled_and_stores_once(make_gateway, dovecot):
    d = dovecot
    mids = [new_msgid() for _ in range(N)]
    d.deliver(make_msg(f"chunk crash {i}", msgid=m) for i, m in enumerate(mids))
    assert d.count("INBOX") == N
    seed = int(os.environ.get("MAILGATE_TEST_SEED") or time.time_ns() % 1_000_000)
    rng = random.Random(seed)
    print(f"kill points seeded with MAILGATE_TEST_SEED={seed}")

    g = gateway_with(make_gateway, upstream(d, "imap", "tls", fetch_per_minute=100_000_000),
                     start=False)
    labelled_at_kill: list[set[str]] = []
    for _ in range(KILLS):
        start_gateway(g)
        # What the earlier kills left labelled must be stored: nothing labelled
        # is ever fetched again, so it was committed before that kill.
        if labelled_at_kill:
            stored = {strip_brackets(m["message_id"]) for m in ticket_messages(g)}
            lost = labelled_at_kill[-1] - stored
            assert not lost, f"{len(lost)} messages labelled upstream but never stored " \
                             f"(seed {seed}): {sorted(lost)[:5]}"
        progress = message_count(g)
        if progress >= N - 1:
            break
        target = min(progress + rng.randint(40, 250), N - 1)
        wait_until(lambda: message_count(g) >= target, 180, f"{target} stored", interval=0.02,
                   g=g, d=d)
        time.sleep(rng.uniform(0, 0.03))
        g.kill()
        ids = d.message_ids("INBOX")
        now = {ids[uid] for uid, f in d.flags("INBOX") if labelled(f)}
        labelled_at_kill.append(now)
        print(f"killed with {len(now)} labelled upstream")
    assert len(labelled_at_kill) >= 2, f"the pull finished before 2 kills (seed {seed})"

    if not g.alive():
        start_gateway(g)
    wait_until(lambda: all(labelled(f) for _, f in d.flags("INBOX")), 240,
               f"all {N} labelled", interval=0.5, g=g, d=d)
    got = collections.Counter(strip_brackets(m["message_id"]) for m in ticket_messages(g))
    twice = {k: v for k, v in got.items() if v > 1}
    assert not twice, f"{len(twice)} stored more than once (seed {seed}): {list(twice)[:5]}"
    assert set(got) == set(mids), f"seed {seed}: {len(set(mids) - set(got))} missing"
    for i, snapshot in enumerate(labelled_at_kill):
        assert snapshot <= set(got), f"kill {i}: labelled but not stored (seed {seed})"
    assert g.rejections() == []
    m = g.metrics()
    # Committed before the last kill but not labelled: found by upstream
    # identity and only labelled, never fetched into a second commit.
    assert (m.get("mailgate_fetch_messages_total", mailbox="support", outcome="duplicate")
            or 0) == 0, f"seed {seed}"
    assert all(f == {"\\Seen", PROCESSED} for _, f in d.flags("INBOX"))
