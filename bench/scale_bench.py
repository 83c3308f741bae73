#!/usr/bin/env python3
"""Flat at scale (issue 12, goal 5): grows one mailgate store to N ticket
messages through SMTP and measures, at about 10^3 and at N stored tickets:

- ingest throughput of the first and of the last batch of 10k messages
  (smtp-source, 2 KB each, a new connection per message) and their ratio;
- latency (median / p99 of REQUESTS requests on one keep-alive connection)
  of every list endpoint, with and without filters, and at deep cursor pages;
- a reply's threading cost: end-of-message -> 250 of REQUESTS customer
  replies (In-Reply-To a stored Message-ID) on one SMTP connection, next to
  the same number of new-ticket messages.

Run by bench/scale_bench.sh (which builds mailgate); the environment knobs are
documented there. Prints the figures; asserts no speed, but exits 1 when the
store does not hold what was sent.
"""

import http.client
import json
import os
import random
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

N = int(os.environ.get("N", "1000000"))
BATCH = int(os.environ.get("BATCH", "10000"))
SESSIONS = int(os.environ.get("SESSIONS", "8"))
MSG_SIZE = int(os.environ.get("MSG_SIZE", "2048"))
REQUESTS = int(os.environ.get("REQUESTS", "200"))
SMALL = int(os.environ.get("SMALL", "1000"))
KEEP = os.environ.get("KEEP", "0") == "1"
SMTP_SOURCE = os.environ.get("SMTP_SOURCE", "/usr/sbin/smtp-source")
BIN = os.environ["MAILGATE_BIN"]
TOKEN = "scale-bench-token"
LIMIT = 50


def log(msg):
    print(f"[scale] {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Gateway:
    def __init__(self, work):
        self.work = work
        self.smtp = free_port()
        self.http = free_port()
        tls = free_port()
        data = os.path.join(work, "data")
        certs = os.path.join(work, "certs")
        os.makedirs(data)
        os.makedirs(certs)
        self.db = os.path.join(data, "mailgate.redb")
        self.config = os.path.join(work, "mailgate.toml")
        with open(self.config, "w") as f:
            f.write(f"""
[server]
hostname = "localhost"
data_dir = "{data}"
domains = ["example.test"]

[smtp]
listen = ["127.0.0.1:{self.smtp}"]
listen_tls = ["127.0.0.1:{tls}"]
bare_lf = "normalize"
max_connections = 512
connections_per_minute_per_ip = 1000000

[tls]
dev_cert_dir = "{certs}"

[http]
listen = "127.0.0.1:{self.http}"
api_token_env = "MAILGATE_SCALE_TOKEN"

[notify]
# Every new ticket queues its acknowledgement (one bench sender would hit
# the per-recipient cap after 10): the outbox grows with the store.
per_recipient_limit = 0

[tickets]
tag = "[MG#{{number}}]"
first_number = 1000

[[category]]
key = "billing"
labels = {{ en = "Billing" }}

[[mailbox]]
name = "support"
addresses = ["support@example.test"]
queue = "Support"
default = true

[[mailbox]]
name = "sales"
addresses = ["sales@example.test"]
queue = "Sales"
""")
        env = dict(os.environ, MAILGATE_SCALE_TOKEN=TOKEN, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.stderr = open(os.path.join(work, "stderr.log"), "w")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--config", self.config],
            env=env, stdout=subprocess.DEVNULL, stderr=self.stderr,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"mailgate exited at start-up (see {work}/stderr.log)")
            try:
                if self.get("/healthz")[0] == 200:
                    log(f"mailgate on smtp {self.smtp}, http {self.http}")
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("mailgate not healthy after 60 s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.http, timeout=120)

    def request(self, method, path, body=None, conn=None):
        c = conn or self.conn()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body)
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        return r.status, (json.loads(data) if data else None)

    def get(self, path, conn=None):
        return self.request("GET", path, conn=conn)

    def newest_ticket(self):
        status, body = self.get("/api/v1/tickets?limit=1")
        assert status == 200, status
        return body["tickets"][0]["id"] if body["tickets"] else 0

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
        return 0


def smtp_source(gw, count, rcpt):
    """Sends `count` messages with smtp-source; returns the seconds it took."""
    t0 = time.monotonic()
    out = subprocess.run(
        [SMTP_SOURCE, "-s", str(SESSIONS), "-m", str(count), "-l", str(MSG_SIZE),
         "-f", "bench@client.test", "-t", rcpt, "-M", "bench-client.localhost",
         f"127.0.0.1:{gw.smtp}"],
        capture_output=True, text=True,
    )
    secs = time.monotonic() - t0
    if out.returncode != 0 or out.stdout.strip() or out.stderr.strip():
        raise SystemExit(f"smtp-source failed ({out.returncode}): {out.stdout[:300]} {out.stderr[:300]}")
    return secs


def message(to, subject, headers="", body="x" * 1500):
    mid = f"<{random.getrandbits(64):016x}.{time.monotonic_ns()}@client.test>"
    return mid, (
        f"From: Ann <ann@client.test>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: {mid}\r\n{headers}\r\n{body}\r\n"
    )


def send_rejections(gw, count, header):
    """Automatic mail that threads nowhere: recorded as rejections."""
    s = smtplib.SMTP("127.0.0.1", gw.smtp, timeout=60)
    for i in range(count):
        _, msg = message("support@example.test", f"auto {i}", header)
        s.sendmail("bench@client.test", ["support@example.test"], msg)
    s.quit()


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def timed_gets(gw, path):
    conn = gw.conn()
    times = []
    items = None
    for _ in range(REQUESTS):
        t0 = time.perf_counter()
        status, body = gw.get(path, conn=conn)
        times.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            raise SystemExit(f"GET {path}: {status} {body}")
        if items is None:
            key = next(k for k in ("tickets", "rejections", "outbound", "mailboxes", "messages")
                       if k in body)
            items = len(body[key])
    conn.close()
    return statistics.median(times), pct(times, 99), items


def endpoints():
    t = "/api/v1/tickets"
    q = lambda **kw: "?" + urllib.parse.urlencode(dict(kw, limit=LIMIT))
    return [
        ("tickets", t + q()),
        ("tickets deep page (cursor=101)", t + q(cursor=101)),
        ("tickets status=open (common)", t + q(status="open")),
        ("tickets status=open deep page", t + q(status="open", cursor=101)),
        ("tickets status=done (rare, old)", t + q(status="done")),
        ("tickets status=closed (no match)", t + q(status="closed")),
        ("tickets mailbox=sales", t + q(mailbox="sales")),
        ("tickets mailbox=sales status=done", t + q(mailbox="sales", status="done")),
        ("tickets category=billing", t + q(category="billing")),
        ("tickets mailbox=support status=done category=billing",
         t + q(mailbox="support", status="done", category="billing")),
        ("ticket 5 with its messages", "/api/v1/tickets/5"),
        ("rejections", "/api/v1/rejections" + q()),
        ("rejections reason=bulk (rare, old)", "/api/v1/rejections" + q(reason="bulk")),
        ("rejections deep page (cursor=60)", "/api/v1/rejections" + q(cursor=60)),
        ("outbound", "/api/v1/outbound" + q()),
        ("outbound state=queued", "/api/v1/outbound" + q(state="queued")),
        ("outbound state=failed (no match)", "/api/v1/outbound" + q(state="failed")),
        ("outbound deep page (cursor=300)", "/api/v1/outbound" + q(cursor=300)),
        ("mailboxes", "/api/v1/mailboxes"),
    ]


def threading_cost(gw, total_tickets):
    """(median, p99) ms of REQUESTS threaded replies and of as many new
    tickets, each timed from MAIL FROM to the 250 after the message."""
    conn = gw.conn()
    targets = []
    rng = random.Random(total_tickets)
    while len(targets) < REQUESTS:
        tid = rng.randint(1, total_tickets)
        status, body = gw.get(f"/api/v1/tickets/{tid}", conn=conn)
        if status == 200 and body["messages"] and body["status"] == "open":
            targets.append((tid, body["messages"][0]["message_id"], body["message_count"],
                            f"{body['mailbox']}@example.test"))
    conn.close()
    s = smtplib.SMTP("127.0.0.1", gw.smtp, timeout=60)
    s.ehlo("bench-client.localhost")
    replies, news = [], []
    for tid, mid, _, to in targets:
        ref = mid if mid.startswith("<") else f"<{mid}>"
        _, msg = message(to, "Re: question",
                         f"In-Reply-To: {ref}\r\nReferences: {ref}\r\n")
        t0 = time.perf_counter()
        s.sendmail("ann@client.test", [to], msg)
        replies.append((time.perf_counter() - t0) * 1000)
    before = gw.newest_ticket()
    for i in range(REQUESTS):
        _, msg = message("support@example.test", f"new question {i}")
        t0 = time.perf_counter()
        s.sendmail("ann@client.test", ["support@example.test"], msg)
        news.append((time.perf_counter() - t0) * 1000)
    s.quit()
    # The replies threaded: no ticket was opened by them, and the sample
    # tickets grew by one message each.
    assert before == total_tickets, (before, total_tickets)
    for tid, _, count, _ in targets[:5]:
        status, body = gw.get(f"/api/v1/tickets/{tid}")
        assert body["message_count"] > count, (tid, count, body["message_count"])
    return (statistics.median(replies), pct(replies, 99),
            statistics.median(news), pct(news, 99))


def measure(gw, label):
    total = gw.newest_ticket()
    log(f"measuring at {total} tickets ({label})")
    figures = {name: timed_gets(gw, path) for name, path in endpoints()}
    figures["threading"] = threading_cost(gw, total)
    return total, figures


def main():
    if not os.access(SMTP_SOURCE, os.X_OK):
        raise SystemExit(f"{SMTP_SOURCE} missing: run scripts/install-test-deps.sh")
    work = tempfile.mkdtemp(prefix="mailgate-scale.")
    gw = Gateway(work)
    try:
        run(gw)
    finally:
        gw.stop()
        if KEEP:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(gw):
    # Old, rare records first, so that at N a filter matching them must
    # reach the bottom of the store: a scan would read it all.
    send_rejections(gw, 50, "Precedence: bulk\r\n")
    send_rejections(gw, 50, "Auto-Submitted: auto-replied\r\n")
    smtp_source(gw, SMALL * 4 // 5, "support@example.test")
    smtp_source(gw, SMALL - SMALL * 4 // 5, "sales@example.test")
    sent = SMALL
    if gw.newest_ticket() != sent:
        raise SystemExit(f"{gw.newest_ticket()} tickets after sending {sent}")
    for tid in range(10, SMALL + 1, 20):
        status, body = gw.request("PATCH", f"/api/v1/tickets/{tid}", {"status": "done"})
        assert status == 200, (status, body)
    for tid in range(20, SMALL + 1, 40):
        status, body = gw.request("PATCH", f"/api/v1/tickets/{tid}", {"categories": ["billing"]})
        assert status == 200, (status, body)
    small = measure(gw, "small")
    sent = small[0] + REQUESTS  # the bench's own new tickets
    batches = []
    i = 0
    rejections_per_batch = max(1, BATCH // 50)
    while sent < N:
        count = min(BATCH, N - sent)
        last = sent + count >= N
        rcpt = "sales@example.test" if i % 5 == 2 and not last else "support@example.test"
        secs = smtp_source(gw, count, rcpt)
        batches.append((sent, count, secs, rcpt))
        sent += count
        i += 1
        log(f"{sent} tickets: {count} in {secs:.1f}s ({count / secs:.0f} msg/s) to {rcpt}; "
            f"rss {gw.rss_mib()} MiB, file {os.path.getsize(gw.db) >> 20} MiB")
        send_rejections(gw, rejections_per_batch, "Auto-Submitted: auto-replied\r\n")
    if gw.newest_ticket() != sent:
        raise SystemExit(f"{gw.newest_ticket()} tickets after sending {sent}")
    large = measure(gw, "large")
    report(small, large, batches, gw)


def report(small, large, batches, gw):
    print()
    print(f"scale bench: {large[0]} tickets of {MSG_SIZE} B via smtp-source "
          f"(-s {SESSIONS}, a connection per message), {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}")
    full = [b for b in batches if b[1] == BATCH and b[3].startswith("support")]
    if len(full) >= 2:
        first, last = full[0], full[-1]
        r1, r2 = first[1] / first[2], last[1] / last[2]
        print(f"ingest: first {BATCH} (from {first[0]}) {r1:.0f} msg/s, "
              f"last {BATCH} (from {last[0]}) {r2:.0f} msg/s, last/first {r2 / r1:.2f}")
    print(f"store file {os.path.getsize(gw.db) >> 20} MiB, rss {gw.rss_mib()} MiB")
    print()
    n1, n2 = small[0], large[0]
    head = f"{'endpoint (limit=50)':56} {'items':>5} {'@' + str(n1) + ' med/p99 ms':>20} {'@' + str(n2) + ' med/p99 ms':>22} {'ratio':>6}"
    print(head)
    for name, _ in endpoints():
        a, b = small[1][name], large[1][name]
        print(f"{name:56} {b[2]:>5} {a[0]:>10.2f} /{a[1]:>7.2f} {b[0]:>12.2f} /{b[1]:>7.2f} {b[0] / a[0]:>6.2f}")
    a, b = small[1]["threading"], large[1]["threading"]
    print(f"{'SMTP reply threaded by In-Reply-To (MAIL..250)':56} {'':>5} {a[0]:>10.2f} /{a[1]:>7.2f} {b[0]:>12.2f} /{b[1]:>7.2f} {b[0] / a[0]:>6.2f}")
    print(f"{'SMTP new-ticket message (MAIL..250)':56} {'':>5} {a[2]:>10.2f} /{a[3]:>7.2f} {b[2]:>12.2f} /{b[3]:>7.2f} {b[2] / a[2]:>6.2f}")


if __name__ == "__main__":
    main()
