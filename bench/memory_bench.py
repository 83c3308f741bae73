#!/usr/bin/env python3
"""Memory of the gateway under large mail, read from /proc/PID/status.

Starts mailgate (the binary in MAILGATE_BIN) with a temp data dir, then:
  1. idle RSS after start-up,
  2. one large message (default 45 MB): VmHWM and the RSS 10 s later,
  3. CONCURRENT large messages at once (default 4), each on its own
     connection: VmHWM and the RSS 10 s after the last 250,
and checks that every message came back byte for byte through the API.

A fresh gateway is started for each of 2. and 3., so each VmHWM is its own.
Prints a table in MiB. No assertion on the figures: this is a bench.

Environment: MAILGATE_BIN (required), SIZE_MB (45), CONCURRENT (4),
SETTLE (10 seconds), KIND (attachment | text), CONFIG_EXTRA (TOML-ish
overrides as JSON, e.g. '{"store": {"cache_size": "64MiB"}}').
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))

from harness import TOKEN_ENV, Gateway  # noqa: E402

MIB = 1024 * 1024
TOKEN = "memory-bench-token"


def status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if v.strip().endswith("kB"):
                out[k] = int(v.split()[0]) * 1024
    return out


def large_message(size: int, kind: str, n: int) -> bytes:
    """A message of about `size` bytes: a short text and a base64
    attachment (kind=attachment) or one long plain-text body (kind=text)."""
    head = (
        f"From: Big Sender <big{n}@client.test>\r\n"
        f"To: support@example.test\r\n"
        f"Subject: large message {n}\r\n"
        f"Message-ID: <large-{n}-{time.time_ns()}@client.test>\r\n"
        "MIME-Version: 1.0\r\n"
    ).encode()
    if kind == "text":
        line = (f"line of message {n} " + "x" * 56 + "\r\n").encode()
        body = line * (size // len(line))
        return head + b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body
    payload = os.urandom(size * 3 // 4 - 4096)
    b64 = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return head + (
        b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the attachment.\r\n"
        b"--b1\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=\"big.bin\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"--b1--\r\n"
    )


def start(workdir: Path, extra: dict) -> Gateway:
    cfg = {"limits": {"max_message_size": 52428800}}
    for k, v in extra.items():
        cfg.setdefault(k, {}).update(v)
    g = Gateway(os.environ["MAILGATE_BIN"], workdir, cfg, env={TOKEN_ENV: TOKEN})
    g.token = TOKEN
    g.start()
    time.sleep(1.0)
    return g


def send_all(g: Gateway, msgs: list[bytes]) -> list:
    replies: list = [None] * len(msgs)

    def one(i: int):
        s = g.smtp(timeout=600)
        try:
            replies[i] = g.send(msgs[i], smtp=s)
        finally:
            s.quit()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(msgs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return replies


def check(g: Gateway, msgs: list[bytes], replies: list) -> bool:
    ok = True
    for m, r in zip(msgs, replies):
        got = g.raw("messages", r.message().id)
        ok = ok and got.status == 200 and got.body == m
    return ok


def run(workdir: Path, extra: dict, count: int, size: int, kind: str, settle: float) -> dict:
    g = start(workdir, extra)
    pid = g.proc.pid
    idle = status(pid)["VmRSS"]
    msgs = [large_message(size, kind, i) for i in range(count)]
    t0 = time.monotonic()
    replies = send_all(g, msgs)
    took = time.monotonic() - t0
    peak = status(pid)["VmHWM"]
    time.sleep(settle)
    settled = status(pid)["VmRSS"]
    intact = check(g, msgs, replies)
    db = workdir / "data" / "mailgate.redb"
    db_size = db.stat().st_size if db.exists() else 0
    g.stop()
    return {
        "idle": idle, "peak": peak, "settled": settled, "seconds": took,
        "intact": intact, "bytes": sum(map(len, msgs)), "db": db_size,
    }


def main() -> int:
    size = int(float(os.environ.get("SIZE_MB", "45")) * 1_000_000)
    conc = int(os.environ.get("CONCURRENT", "4"))
    settle = float(os.environ.get("SETTLE", "10"))
    kind = os.environ.get("KIND", "attachment")
    extra = json.loads(os.environ.get("CONFIG_EXTRA", "{}"))
    with tempfile.TemporaryDirectory(prefix="mailgate-mem.") as tmp:
        one = run(Path(tmp) / "one", extra, 1, size, kind, settle)
        many = run(Path(tmp) / "many", extra, conc, size, kind, settle)
    print(f"memory bench: {size / 1e6:.0f} MB messages ({kind}), settle {settle:.0f} s")
    print(f"  idle RSS                         {one['idle'] / MIB:8.1f} MiB")
    for name, r, n in (("1 message", one, 1), (f"{conc} concurrent", many, conc)):
        print(f"  {name:<16} peak VmHWM      {r['peak'] / MIB:8.1f} MiB"
              f"  ({(r['peak'] - r['idle']) / r['bytes']:.2f}x the message bytes above idle)")
        print(f"  {name:<16} settled VmRSS   {r['settled'] / MIB:8.1f} MiB")
        print(f"  {name:<16} took            {r['seconds']:8.1f} s, stored intact: {r['intact']},"
              f" redb file {r['db'] / MIB:.0f} MiB for {r['bytes'] / MIB:.0f} MiB of mail ({n})")
    return 0 if one["intact"] and many["intact"] else 1


if __name__ == "__main__":
    sys.exit(main())
