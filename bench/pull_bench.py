#!/usr/bin/env python3
"""Upstream pull from a real Dovecot, against Dovecot itself (issue 12, goal 6).

Starts a private Dovecot (tests/integration/dovecot.py), delivers N 2 KB
messages into its INBOX (Maildir files, as an MTA would), then:

  1. the peer: Python's imaplib logs in over TLS and does what the puller
     does per message with no gateway behind it (UID SEARCH UNSEEN, then
     UID FETCH BODY.PEEK[] in batches): the ceiling Dovecot and this
     machine allow;
  2. mailgate: a gateway whose mailbox pulls from that INBOX, fetch limit
     off, IDLE off; timed from the first login to the moment the API
     reports N imported, and checked: N ticket messages, no rejection,
     every message flagged in Dovecot.

Prints msg/s for both and the ratio, and mailgate's group-commit figures
(transactions, mean batch, mean commit time). No assertion on speed: a bench.
Environment: MAILGATE_BIN (required), N (5000), BATCH (100, peer fetch size).
"""

from __future__ import annotations

import imaplib
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))

from dovecot import PASSWORD_ENV, Dovecot, upstream  # noqa: E402
from harness import TOKEN_ENV, Gateway  # noqa: E402
from imapbase import PASSWORD, USER  # noqa: E402

TOKEN = "pull-bench-token"


def message(i: int, run: str) -> bytes:
    body = ("This is line %d of a bench message, padded to about two kilobytes.\r\n" * 28) % tuple(
        range(28))
    return (f"From: Customer {i} <c{i}@client.test>\r\nTo: support@example.test\r\n"
            f"Subject: pull bench {i}\r\nMessage-ID: <pull-{run}-{i}@client.test>\r\n"
            f"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\n\r\n{body}").encode()


def peer_rate(d: Dovecot, n: int, batch: int) -> float:
    ctx = ssl.create_default_context(cafile=d.ca_file)
    start = time.monotonic()
    imap = imaplib.IMAP4_SSL("localhost", d.imaps_port, ssl_context=ctx)
    imap.login(USER, PASSWORD)
    imap.select("INBOX", readonly=True)
    typ, data = imap.uid("SEARCH", None, "UNSEEN")
    uids = data[0].split()
    assert len(uids) == n, f"peer: {len(uids)} unseen, expected {n}"
    got = 0
    for k in range(0, len(uids), batch):
        chunk = b",".join(uids[k:k + batch]).decode()
        typ, data = imap.uid("FETCH", chunk, "(BODY.PEEK[])")
        got += sum(1 for part in data if isinstance(part, tuple))
    imap.logout()
    elapsed = time.monotonic() - start
    assert got == n, f"peer fetched {got} of {n}"
    return n / elapsed


def mailgate_rate(d: Dovecot, n: int) -> float:
    binary = os.environ["MAILGATE_BIN"]
    work = Path(tempfile.mkdtemp(prefix="mailgate-pull-bench-"))
    up = upstream(d, "imap", "tls", poll_interval="1h", fetch_per_minute=100_000_000)
    cfg = {"mailbox": [{"name": "support", "addresses": ["support@example.test"],
                        "queue": "Support", "default": True, "upstream": up}]}
    g = Gateway(binary, work / "gw", cfg, env={PASSWORD_ENV: PASSWORD, TOKEN_ENV: TOKEN})
    g.token = TOKEN
    logins = d.logins()
    g.start()
    try:
        deadline = time.monotonic() + 600
        # The clock starts at the first login the gateway makes.
        while d.logins() == logins:
            assert time.monotonic() < deadline, "mailgate never logged in"
            time.sleep(0.005)
        start = time.monotonic()
        while True:
            mb = g.api("/api/v1/mailboxes/support")
            if mb.get("imported", 0) >= n:
                break
            assert g.alive(), g.log_tail(40)
            assert time.monotonic() < deadline, f"only {mb.get('imported')} of {n}: {mb}"
            time.sleep(0.02)
        elapsed = time.monotonic() - start
        m = g.metrics()
        txns = m.get("mailgate_store_commit_batch_size_count")
        if txns:
            print(f"mailgate: {txns:.0f} transactions, mean batch "
                  f"{m.get('mailgate_store_commit_batch_size_sum') / txns:.1f}, mean commit "
                  f"{1000 * m.get('mailgate_store_commit_seconds_sum') / txns:.2f} ms")
        messages, rejections = g.store_counts()
        assert (messages, rejections) == (n, 0), (messages, rejections)
        flagged = sum(1 for _, f in d.flags("INBOX") if f)
        assert flagged == n, f"{flagged} of {n} messages flagged in Dovecot"
        return n / elapsed
    finally:
        g.stop()


def main() -> int:
    n = int(os.environ.get("N", "5000"))
    batch = int(os.environ.get("BATCH", "100"))
    d = Dovecot().start()
    try:
        run = str(time.time_ns())
        d.deliver(message(i, run) for i in range(n))
        peer = peer_rate(d, n, batch)
        ours = mailgate_rate(d, n)
    finally:
        d.stop()
    print(f"{'messages':>10} {'dovecot+imaplib msg/s':>22} {'mailgate msg/s':>15} {'mailgate/peer':>14}")
    print(f"{n:>10} {peer:>22.1f} {ours:>15.1f} {ours / peer:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
