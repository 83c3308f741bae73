"""Authenticated submissions per second over STARTTLS: mailgate's submission
endpoint next to Postfix's own submission service, configured the same way,
on the same machine, in the same run. Called by bench/submission_bench.sh
(which builds the release binary); see bench/README.md.

Postfix is tests/integration/postfix.py's private instance (its
`submission` smtpd: STARTTLS required, SASL through an auth-only Dovecot,
AUTH only after TLS), with the sender held to the login
(reject_sender_login_mismatch, as mailgate holds it to the account's
mailboxes), each smtpd serving up to 100 clients (the test fixture's
max_use = 1 is for determinism, not speed), and the same argon2id hash as
mailgate's account (Dovecot's ARGON2ID scheme reads the PHC string that
`mailgate hash-password` prints). It relays sink.test to an smtp-sink.
mailgate relays everything through its [relay] to a second smtp-sink;
every send limit off.

The client: P processes, each one connection at a time: STARTTLS (the
server's certificate verified), AUTH PLAIN, then K messages (MAIL, RCPT,
DATA; the same 10 KB message), QUIT. Timed from a common start until the
last reply; every message must get a 250.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import signal
import smtplib
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from postfix import Postfix, POSTFIX, USER as PF_USER, PASSWORD as PF_PASSWORD  # noqa: E402
from harness import free_ports  # noqa: E402

SENDER = "support@example.test"
RCPT = "customer@sink.test"
MG_USER = "bench"
MG_PASSWORD = PF_PASSWORD  # the same password (and the same hash) for both


def message(size: int) -> bytes:
    head = (f"From: Support <{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: submission bench\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
            "X-Bench: 1\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    body = (line * (size // len(line) + 1))[:max(0, size - len(head) - 2)]
    return head + body.rstrip(b"\r\n") + b"\r\n"


# ------------------------------------------------------------- client ---

def _worker(args):
    port, ca, user, password, connections, per_conn, msg, start_at = args
    ctx = ssl.create_default_context(cafile=ca)
    while time.time() < start_at:
        time.sleep(0.001)
    ok = bad = 0
    errors = []
    for _ in range(connections):
        try:
            s = smtplib.SMTP("127.0.0.1", port, local_hostname="bench.client.test", timeout=60)
            s._host = "localhost"  # the certificate's name
            s.ehlo()
            s.starttls(context=ctx)
            s.ehlo()
            s.login(user, password)
            for _ in range(per_conn):
                s.mail(SENDER)
                code, text = s.rcpt(RCPT)
                if code != 250:
                    raise smtplib.SMTPException(f"RCPT: {code} {text!r}")
                code, text = s.data(msg)
                if code == 250:
                    ok += 1
                else:
                    bad += 1
                    errors.append(f"DATA: {code} {text!r}")
            s.quit()
        except (smtplib.SMTPException, OSError) as e:
            bad += per_conn
            errors.append(repr(e))
    return ok, bad, errors[:3]


def drive(port, ca, user, password, clients, per_conn, total, msg) -> tuple[float, int, list]:
    """Sends `total` messages from `clients` processes; returns (seconds, ok, errors)."""
    conns = max(1, total // per_conn)
    shares = [conns // clients + (1 if i < conns % clients else 0) for i in range(clients)]
    start_at = time.time() + 0.5
    with mp.Pool(clients) as pool:
        res = pool.map_async(_worker, [(port, ca, user, password, n, per_conn, msg, start_at)
                                       for n in shares])
        out = res.get(3600)
    secs = time.time() - start_at
    ok = sum(o for o, _, _ in out)
    errors = [e for _, b, es in out for e in es if b]
    if sum(b for _, b, _ in out):
        errors.insert(0, f"{sum(b for _, b, _ in out)} messages not accepted")
    return secs, ok, errors


# -------------------------------------------------------------- peers ---

def smtp_sink(workdir: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(["/usr/sbin/smtp-sink", "-u", "nobody", f"127.0.0.1:{port}", "256"],
                            cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(workdir / f"smtp-sink-{port}.log", "wb"))


def start_postfix(phc: str, sink_port: int) -> Postfix:
    p = Postfix(mailboxes=("nobody@relay.test",))
    p._setup()
    etc = p.conf_dir
    (etc / "senders").write_text(f"{SENDER} {PF_USER}\n")
    settings = [
        "max_use = 100",
        f"smtpd_sender_login_maps = texthash:{etc}/senders",
        "smtpd_sender_restrictions = reject_sender_login_mismatch",
        f"transport_maps = texthash:{etc}/transport",
        "smtp_tls_security_level = none",
    ]
    subprocess.run(["postconf", "-c", str(etc), "-e", *settings], check=True)
    (p.root / "sasl-passwd").write_text(f"{PF_USER}:{{ARGON2ID}}{phc}\n")
    (etc / "transport").write_text(f"sink.test smtp:[127.0.0.1]:{sink_port}\n")
    return p.start()


class Mailgate:
    def __init__(self, binary: str, workdir: Path, phc: str, sink_port: int):
        self.workdir = workdir
        ports = free_ports(["smtp", "smtps", "http", "sub"], avoid={sink_port})
        self.http, self.sub = ports["http"], ports["sub"]
        (workdir / "data").mkdir(parents=True)
        self.config = workdir / "mailgate.toml"
        self.config.write_text(f"""\
[server]
hostname = "localhost"
data_dir = "{workdir}/data"
domains = ["example.test"]

[smtp]
listen = ["127.0.0.1:{ports['smtp']}"]
listen_tls = ["127.0.0.1:{ports['smtps']}"]

[tls]
dev_cert_dir = "{workdir}/certs"

[http]
listen = "127.0.0.1:{self.http}"
api_token_env = "MAILGATE_BENCH_TOKEN"

[relay]
host = "127.0.0.1"
port = {sink_port}
security = "none"
allow_insecure = true

[outbound]
messages_per_minute = 0
bytes_per_5_minutes = 0
recipients_per_day = 0

[[mailbox]]
name = "support"
addresses = ["{SENDER}"]
queue = "Support"
default = true

[submission]
listen = "127.0.0.1:{self.sub}"
listen_tls = ""
max_connections = 512
max_connections_per_ip = 512
connections_per_minute_per_ip = 1000000

[[submission.account]]
user = "{MG_USER}"
password_hash = "{phc}"
mailboxes = ["support"]
""")
        env = {k: v for k, v in os.environ.items() if k != "MAILGATE_BENCH_TOKEN"}
        env.setdefault("MAILGATE_LOG", "warn")
        self.proc = subprocess.Popen([binary, "serve", "--config", str(self.config)], cwd=workdir,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(workdir / "stderr.log", "wb"), env=env)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, (workdir / "stderr.log").read_text()[-2000:]
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz", timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mailgate did not start"
            time.sleep(0.1)

    @property
    def ca(self) -> str:
        return str(self.workdir / "certs" / "dev-cert.pem")

    def queued(self) -> int:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=10).read().decode()
        m = re.search(r'^mailgate_submission_messages_total\{[^}]*outcome="queued"[^}]*\} (\S+)$',
                      text, re.M)
        return int(float(m.group(1))) if m else 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# --------------------------------------------------------------- main ---

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mailgate", required=True)
    ap.add_argument("--msgs", type=int, default=400, help="messages per run, N per connection")
    ap.add_argument("--single-msgs", type=int, default=200, help="messages per run, one per connection")
    ap.add_argument("--per-conn", type=int, default=10)
    ap.add_argument("--clients", default="4,16")
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    if os.geteuid() != 0 or not os.path.exists(POSTFIX):
        sys.exit("run as root with Postfix installed (scripts/install-test-deps.sh)")

    work = Path(tempfile.mkdtemp(prefix="mailgate-subbench-"))
    os.chmod(work, 0o755)
    phc = subprocess.run([a.mailgate, "hash-password", "--stdin"], input=MG_PASSWORD + "\n",
                         capture_output=True, text=True, check=True).stdout.strip()
    sink_ports = free_ports(["pf", "mg"])
    sinks = [smtp_sink(work, sink_ports["pf"]), smtp_sink(work, sink_ports["mg"])]
    pf = mg = None
    failed = False
    try:
        pf = start_postfix(phc, sink_ports["pf"])
        mg = Mailgate(a.mailgate, work / "mailgate", phc, sink_ports["mg"])
        msg = message(a.size)
        version = subprocess.run(["postconf", "-c", str(pf.conf_dir), "-h", "mail_version"],
                                 capture_output=True, text=True).stdout.strip()
        print(f"[bench] postfix {version} submission on :{pf.submission_port}, mailgate "
              f"submission on :{mg.sub}; {len(msg)} B message; {os.cpu_count()} cores",
              file=sys.stderr)
        rows = []
        expected_mg = 0
        for clients in (int(c) for c in a.clients.split(",")):
            for per_conn, total in ((a.per_conn, a.msgs), (1, a.single_msgs)):
                rates = {"postfix": [], "mailgate": []}
                for _ in range(a.repeat):
                    for name in ("postfix", "mailgate"):
                        if name == "postfix":
                            port, ca, user = pf.submission_port, pf.ca_file, PF_USER
                        else:
                            port, ca, user = mg.sub, mg.ca, MG_USER
                        secs, ok, errors = drive(port, ca, user, MG_PASSWORD, clients, per_conn,
                                                 total, msg)
                        if errors:
                            failed = True
                            print(f"[bench] {name}: {errors}", file=sys.stderr)
                        if name == "mailgate":
                            expected_mg += ok
                        rates[name].append(ok / secs)
                        print(f"[bench] {name:8} clients={clients:2} per_conn={per_conn:2}: "
                              f"{ok} in {secs:.2f}s = {ok / secs:.1f} msg/s", file=sys.stderr)
                rows.append((clients, per_conn, statistics.median(rates["postfix"]),
                             statistics.median(rates["mailgate"])))
        if mg.queued() != expected_mg:
            failed = True
            print(f"[bench] mailgate counted {mg.queued()} queued, the clients {expected_mg}",
                  file=sys.stderr)
        print()
        print(f"submission: STARTTLS + AUTH PLAIN (argon2id m=19456,t=2 for both), {len(msg)} B, "
              f"127.0.0.1, {os.cpu_count()} cores; median of {a.repeat} round(s)")
        print("mailgate answers 250 after its redb commit (fsync); Postfix after its queue file fsync")
        print(f"{'clients':>7} {'msgs/conn':>9} {'postfix msg/s':>14} {'mailgate msg/s':>15} "
              f"{'mailgate/postfix':>17}")
        for clients, per_conn, p, m in rows:
            print(f"{clients:>7} {per_conn:>9} {p:>14.1f} {m:>15.1f} {m / p:>17.2f}")
    finally:
        if mg:
            mg.stop()
        if pf:
            pf.close()
        for s in sinks:
            s.terminate()
            s.wait(10)
        if os.environ.get("KEEP") == "1":
            print(f"[bench] kept {work}", file=sys.stderr)
        else:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
