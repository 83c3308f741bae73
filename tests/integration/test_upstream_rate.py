"""fetch_per_minute: a per-mailbox governor with burst = the same number.
Two mailboxes of one gateway read two folders of one Dovecot: the one with a
small limit waits (mailgate_fetch_throttled_total counts the waits), the one
with a large limit never does, and both end with every message imported."""

from __future__ import annotations

from dovecot import (  # noqa: F401 - fixtures
    dovecot, gateway_with, labelled, mailbox, mailbox_config, ticket_messages, upstream,
    wait_until)
from mailmsg import make_msg, new_msgid, strip_brackets

# 12 per minute: a burst of 12, then one message every 5 s: 14 messages make
# exactly 2 waits (~10 s).
SLOW_RATE = 12
N = 14


def test_fetch_rate_limit_throttles_only_the_limited_mailbox(make_gateway, dovecot):
    d = dovecot
    d.create_folder("INBOX.slow")
    d.create_folder("INBOX.fast")
    slow = [new_msgid() for _ in range(N)]
    fast = [new_msgid() for _ in range(N)]
    d.append("INBOX.slow", [make_msg(f"slow {i}", msgid=m) for i, m in enumerate(slow)])
    d.append("INBOX.fast", [make_msg(f"fast {i}", msgid=m) for i, m in enumerate(fast)])
    boxes = [
        mailbox_config(upstream(d, "imap", "tls", folder="INBOX.slow",
                                fetch_per_minute=SLOW_RATE)),
        mailbox_config(upstream(d, "imap", "tls", folder="INBOX.fast",
                                fetch_per_minute=100000), "sales"),
    ]
    g = gateway_with(make_gateway, mailboxes=boxes)

    wait_until(lambda: mailbox(g, "sales")["imported"] == N, 60, "sales imports all", g=g, d=d)
    wait_until(lambda: mailbox(g, "support")["imported"] == N, 90,
               "the rate-limited mailbox imports all", g=g, d=d)
    assert all(labelled(f) for _, f in d.flags("INBOX.slow"))
    assert all(labelled(f) for _, f in d.flags("INBOX.fast"))
    got = sorted(strip_brackets(m["message_id"]) for m in ticket_messages(g))
    assert got == sorted(slow + fast)

    m = g.metrics()
    throttled = m.get("mailgate_fetch_throttled_total", mailbox="support")
    # The first 12 go at once (burst = fetch_per_minute); the 13th and 14th wait
    # (only the 14th if the first 12 took over 5 s). More waits: a smaller burst.
    assert 1 <= throttled <= N - SLOW_RATE, (
        f"with fetch_per_minute = {SLOW_RATE} (burst {SLOW_RATE}) and {N} messages, "
        f"{N - SLOW_RATE} fetches must wait; mailgate_fetch_throttled_total = {throttled}")
    assert m.get("mailgate_fetch_throttled_total", mailbox="sales") == 0
    assert m.get("mailgate_fetch_messages_total", mailbox="support", outcome="imported") == N
    assert m.get("mailgate_fetch_messages_total", mailbox="sales", outcome="imported") == N
