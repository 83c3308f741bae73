#!/usr/bin/env python3
"""Storage amplification: redb bytes per stored message against its raw size.

Starts mailgate (MAILGATE_BIN) with a temp data dir, sends N distinct
messages of about SIZE bytes over SMTP (THREADS connections, each reused),
checks that N ticket messages were stored, stops the gateway and prints
the database file size / (N x raw size). No assertion: a bench.

Environment: MAILGATE_BIN (required), N (20000), SIZE (2048), THREADS (4),
ACKS (1; 0 switches the acknowledgement off, so only the messages and
their tickets are stored, not an outbound acknowledgement per ticket),
KEEP_DB (a path: the database file is copied there before the temp dir goes).
"""

from __future__ import annotations

import os
import random
import string
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))

from harness import SALES, SUPPORT, TOKEN_ENV, Gateway  # noqa: E402

TOKEN = "compact-bench-token"


def message(i: int, size: int, rng: random.Random) -> bytes:
    head = (
        f"From: Customer {i} <c{i}@client.test>\r\n"
        "To: support@example.test\r\n"
        f"Subject: question number {i}\r\n"
        f"Message-ID: <compact-{i}-{rng.getrandbits(48):x}@client.test>\r\n"
        "Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    words = []
    n = len(head)
    while n < size - 2:
        w = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9)))
        words.append(w)
        n += len(w) + 1
    body = " ".join(words)
    lines = [body[k:k + 72] for k in range(0, len(body), 72)]
    return (head + "\r\n".join(lines).encode() + b"\r\n")[:size - 2] + b"\r\n"


def main() -> int:
    n = int(os.environ.get("N", "20000"))
    size = int(os.environ.get("SIZE", "2048"))
    threads = int(os.environ.get("THREADS", "4"))
    rng = random.Random(12)
    msgs = [message(i, size, rng) for i in range(n)]
    raw_total = sum(map(len, msgs))
    with tempfile.TemporaryDirectory(prefix="mailgate-compact.") as tmp:
        over = {}
        if os.environ.get("ACKS", "1") == "0":
            support = dict(SUPPORT, notify={"acknowledgement": {"active": False}})
            over = {"mailbox": [support, dict(SALES)]}
        g = Gateway(os.environ["MAILGATE_BIN"], Path(tmp), over, env={TOKEN_ENV: TOKEN})
        g.token = TOKEN
        g.start()
        failures = []

        def worker(k: int):
            s = g.smtp(timeout=120)
            for j, i in enumerate(range(k, n, threads)):
                if j and j % 500 == 0:  # stay under smtp.max_commands per session
                    s.quit()
                    s = g.smtp(timeout=120)
                r = g.send(msgs[i], smtp=s)
                if r.code != 250 or not r.outcomes or r.outcomes[0].kind != "message":
                    failures.append((i, str(r)))
            s.quit()

        t0 = time.monotonic()
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        took = time.monotonic() - t0
        counts = g.store_counts()
        g.stop()
        db = Path(tmp) / "data" / "mailgate.redb"
        db_size = db.stat().st_size
        keep = os.environ.get("KEEP_DB")
        if keep:  # copy the file out for a per-table breakdown (mailgate store-stats)
            import shutil
            shutil.copyfile(db, keep)
    acks = "off" if os.environ.get("ACKS", "1") == "0" else "on"
    print(f"compact bench: {n} messages of {raw_total / n:.0f} bytes, acknowledgements {acks},"
          f" sent in {took:.1f} s")
    print(f"  stored (ticket messages, rejections): {counts}; failures: {len(failures)}")
    print(f"  redb file {db_size / 1e6:.1f} MB for {raw_total / 1e6:.1f} MB of mail")
    print(f"  {db_size / n:.0f} bytes per message: {db_size / raw_total:.2f}x the raw size")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
