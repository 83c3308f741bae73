#!/usr/bin/env python3
"""Ack latency: end-of-DATA -> 250, mailgate against smtp-sink (bench, not a test).

Called by bench/ack_latency.sh, which starts both servers. For each client
count N: first N clients send as fast as they can (mailgate's peak rate);
then N clients together offer half of that peak, paced, over reused
connections, and each end-of-DATA ("." line) -> 250 is timed, against
mailgate and against smtp-sink at the same offered rate. Each client is its
own process (no GIL between clients); a message is 10 KB.

Prints one line per client count plus the verdict of goal 2 of issue 12:
p99(mailgate) <= 2 x p99(smtp-sink) + one fsync of the data dir's disk.
"""

import argparse
import multiprocessing as mp
import os
import smtplib
import socket
import statistics
import sys
import time

RCPT = "support@example.test"
SENDER = "bench@client.test"


def message(size: int, n: int, client: int) -> bytes:
    head = (f"From: Bench <{SENDER}>\r\nTo: {RCPT}\r\nSubject: ack latency {client}.{n}\r\n"
            f"Message-ID: <ack-{os.getpid()}-{client}-{n}-{time.time_ns()}@client.test>\r\n\r\n").encode()
    line = b"x" * 76 + b"\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


def client(port: int, count: int, interval: float, size: int, idx: int, clients: int,
           start_at: float, out):
    """Sends `count` messages on one connection, one every `interval` s
    (0: back to back); returns the end-of-DATA -> reply times in seconds."""
    lat = []
    failures = 0
    s = smtplib.SMTP("127.0.0.1", port, timeout=60)
    # The "." line goes out in its own write, right after the body: without
    # NODELAY, Nagle holds it until the server's delayed ACK (~40 ms).
    s.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.ehlo("bench-client.localhost")
    while time.monotonic() < start_at:
        time.sleep(0.001)
    # Spread the clients' phases over one interval.
    next_at = start_at + (interval * idx / clients if interval else 0)
    for n in range(count):
        if interval:
            now = time.monotonic()
            if next_at > now:
                time.sleep(next_at - now)
            next_at += interval
        code, _ = s.mail(SENDER)
        code2, _ = s.rcpt(RCPT)
        if code != 250 or code2 not in (250, 251):
            failures += 1
            s.rset()
            continue
        code, _ = s.docmd("DATA")
        if code != 354:
            failures += 1
            continue
        s.send(message(size, n, idx))
        t0 = time.perf_counter()
        s.send(b".\r\n")
        code, _ = s.getreply()
        lat.append(time.perf_counter() - t0)
        if code != 250:
            failures += 1
    s.quit()
    out.put((lat, failures))


def run(port: int, clients: int, per_client: int, rate: float, size: int):
    """All clients at once; rate 0 = as fast as they go. Returns
    (msg/s over the whole run, latencies, failures)."""
    q = mp.Queue()
    interval = clients / rate if rate else 0.0
    start_at = time.monotonic() + 0.5 + 0.02 * clients
    procs = [mp.Process(target=client, args=(port, per_client, interval, size, i, clients, start_at, q))
             for i in range(clients)]
    for p in procs:
        p.start()
    results = [q.get(timeout=600) for _ in procs]
    end = time.monotonic()
    for p in procs:
        p.join()
    lat = [x for r in results for x in r[0]]
    failures = sum(r[1] for r in results)
    return clients * per_client / (end - start_at), lat, failures


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def fsync_time(directory: str, rounds: int = 300):
    """Median and p99 of write(4 KiB) + fsync on the data dir's disk."""
    path = os.path.join(directory, ".fsync-probe")
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        block = b"\0" * 4096
        for i in range(rounds):
            os.pwrite(fd, block, (i % 64) * 4096)
            t0 = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(times), pct(times, 99)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mailgate-port", type=int, required=True)
    ap.add_argument("--sink-port", type=int, required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--clients", default="4,16")
    ap.add_argument("--msgs", type=int, default=2000, help="messages per measured run")
    ap.add_argument("--size", type=int, default=10240)
    a = ap.parse_args()

    fs_med, fs_p99 = fsync_time(a.data_dir)
    print(f"fsync on the data dir's disk (4 KiB write + fsync): median {fs_med * 1e3:.3f} ms, p99 {fs_p99 * 1e3:.3f} ms")
    print(f"{a.size} B messages, reused connections, one process per client, 127.0.0.1, {os.cpu_count()} cores")
    print("end-of-DATA -> 250 in ms, at half of mailgate's peak rate (same offered rate for both)")
    hdr = (f"{'clients':>7} {'peak msg/s':>10} {'offered/s':>9} {'mg median':>9} {'mg p99':>8} "
           f"{'sink median':>11} {'sink p99':>8} {'bound':>8} {'p99<=bound':>10}")
    print(hdr)
    failed = False
    for n in [int(x) for x in a.clients.split(",") if x]:
        per = max(10, a.msgs // n)
        peak, _, f0 = run(a.mailgate_port, n, per, 0, a.size)
        offered = peak / 2
        _, mg, f1 = run(a.mailgate_port, n, per, offered, a.size)
        _, sk, f2 = run(a.sink_port, n, per, offered, a.size)
        if f0 or f1 or f2:
            print(f"clients={n}: {f0 + f1} mailgate and {f2} smtp-sink transactions not answered 250", file=sys.stderr)
            failed = True
        bound = 2 * pct(sk, 99) + fs_med
        ok = pct(mg, 99) <= bound
        print(f"{n:>7} {peak:>10.1f} {offered:>9.1f} {statistics.median(mg) * 1e3:>9.3f} {pct(mg, 99) * 1e3:>8.3f} "
              f"{statistics.median(sk) * 1e3:>11.3f} {pct(sk, 99) * 1e3:>8.3f} {bound * 1e3:>8.3f} {'yes' if ok else 'no':>10}",
              flush=True)
        if fs_p99 > bound:
            # Every acknowledgement waits for at least one whole fsync that
            # began after its message arrived, so its p99 is at least the
            # fsync's own p99.
            print(f"{'':>7} note: one fsync's own p99 ({fs_p99 * 1e3:.3f} ms) is above this bound: no server that "
                  f"answers 250 after an fsync can meet it on this disk", flush=True)
    print("bound = 2 x smtp-sink p99 + one fsync (median); goal 2 of issue 12 is p99 <= bound")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
