"""Orderly shutdown on SIGTERM: the listeners stop, open SMTP sessions get
421 and are joined, fetch workers finish the messages they began (commit and
upstream mark) and are joined, the store writer commits what is queued and is
joined, and only then does the process exit, 0, saying so in its log.

Under load: every message that got a 250 is stored exactly once after a
restart; during a 500-message IMAP import from Dovecot, what the gateway
committed and what it marked upstream are the same set at the moment it
exits, and a later start imports the rest, once each."""

from __future__ import annotations

import collections
import http.client
import re
import signal
import smtplib
import threading

import pytest

from dovecot import (  # noqa: F401 - fixtures
    PROCESSED, dovecot, gateway_with, mailbox, message_count, start_gateway, ticket_messages,
    upstream, wait_until)
from harness import to_toml
from mailmsg import make_msg, new_msgid, strip_brackets

DRAINED_RE = re.compile(r"store writer drained, (\d+) transactions .*requests=(\d+)")


def log_lines(g, which: int | None = None) -> list[str]:
    return [line for line in g.log_text(which).splitlines() if line.strip()]


def index_of(lines: list[str], needle: str) -> int:
    hits = [i for i, line in enumerate(lines) if needle in line]
    assert hits, f"no log line contains {needle!r}:\n" + "\n".join(lines[-20:])
    assert len(hits) == 1, f"{len(hits)} log lines contain {needle!r}"
    return hits[0]


def assert_orderly_exit(g, which: int | None = None, workers: bool = False) -> int:
    """The shutdown steps are logged once each, in order, and "stopped" is the
    last line. Returns the requests the writer committed during the run."""
    lines = log_lines(g, which)
    steps = ["shutting down: listeners closed", "SMTP sessions drained"]
    if workers:
        steps.append("fetch workers stopped")
    steps += ["store writer drained", "mailgate::app::serve: stopped"]
    at = [index_of(lines, s) for s in steps]
    assert at == sorted(at), "shutdown steps out of order:\n" + "\n".join(lines[min(at):])
    assert at[-1] == len(lines) - 1, \
        "something was logged after 'stopped':\n" + "\n".join(lines[at[-1]:])
    m = DRAINED_RE.search(lines[at[-2]])
    assert m, f"the writer's line does not count its work: {lines[at[-2]]}"
    return int(m.group(2))


# ------------------------------------------------------------- SMTP load ---

def _sender(g, stop: threading.Event, acked: list, lock: threading.Lock, prefix: str):
    """Sends until told to stop or the server ends the session; keeps every 250."""
    try:
        s = g.smtp(timeout=60)
    except OSError:
        return
    i = 0
    try:
        while not stop.is_set():
            i += 1
            mid = new_msgid()
            msg = make_msg(f"{prefix} {i}", msgid=mid, body=f"message {i} of {prefix}\r\n" * 50)
            try:
                reply = g.send(msg, smtp=s)
            except (smtplib.SMTPException, OSError, AssertionError):
                return  # 421 or closed: not acknowledged
            if reply.code != 250:
                return
            with lock:
                acked.append((mid, reply))
    finally:
        try:
            s.close()
        except Exception:  # noqa: BLE001
            pass


def test_sigterm_during_smtp_load_keeps_every_250_once(make_gateway):
    g = make_gateway()
    stop = threading.Event()
    acked: list = []
    lock = threading.Lock()
    threads = [threading.Thread(target=_sender, args=(g, stop, acked, lock, f"load-{n}"))
               for n in range(8)]
    for t in threads:
        t.start()
    wait_until(lambda: len(acked) >= 120, 240, "120 acknowledged messages", interval=0.01, g=g)
    # While the senders are mid-transaction: some in DATA, some waiting for the commit.
    rc = g.stop(signal.SIGTERM)
    stop.set()
    for t in threads:
        t.join(60)
    assert rc == 0, f"SIGTERM under load must end with exit code 0, got {rc}\n{g.log_tail()}"
    committed = assert_orderly_exit(g)

    g.start()
    stored = [m for t in g.tickets() for m in g.ticket(t["id"])["messages"]]
    counts = collections.Counter(strip_brackets(m["message_id"]) for m in stored)
    twice = [k for k, v in counts.items() if v > 1]
    assert not twice, f"stored more than once: {twice[:5]}"
    for mid, reply in acked:
        o = reply.message()
        r = g.http("GET", f"/api/v1/messages/{o.id}")
        assert r.status == 200, f"{mid} got a 250 ({reply}) but is not in the store after restart"
        assert strip_brackets(r.json()["message_id"]) == mid
    assert len(stored) >= len(acked)
    assert committed == len(stored), (
        f"the writer reported {committed} committed requests, the store holds {len(stored)}")


def test_exit_waits_for_the_writer_and_does_not_hang(make_gateway, dovecot):
    """With an idle SMTP session, one in the middle of a transaction, an HTTP
    keep-alive connection and an idle fetch worker all open, SIGTERM ends the
    process (within the harness' stop timeout), exit 0, and its log shows the
    writer drained after sessions and workers were joined, just before
    "stopped"."""
    d = dovecot
    d.append("INBOX", [make_msg(f"before {i}", msgid=new_msgid()) for i in range(3)])
    g = gateway_with(make_gateway, upstream(d, "imap", "tls", poll_interval="1h"))
    wait_until(lambda: message_count(g) == 3, 60, "the first sync", g=g, d=d)

    idle = g.raw_smtp(timeout=120)
    idle.expect("EHLO client.test", 250)
    busy = g.raw_smtp(timeout=120)
    busy.expect("EHLO client.test", 250)
    busy.expect("MAIL FROM:<alice@client.test>", 250)
    busy.expect("RCPT TO:<support@example.test>", 250)
    keep = http.client.HTTPConnection("127.0.0.1", g.http_port, timeout=60)
    keep.request("GET", "/healthz")
    assert keep.getresponse().read() is not None

    g.send(make_msg("one more", msgid=new_msgid())).message()
    rc = g.stop(signal.SIGTERM)
    assert rc == 0, f"exit code {rc}\n{g.log_tail()}"
    committed = assert_orderly_exit(g, workers=True)
    assert committed == 4, f"3 imported + 1 over SMTP were committed, the log says {committed}"
    for r in (idle, busy):
        rest = r.replies_until_close()
        assert rest and all(code == 421 and text.startswith("4.3.2") for code, text in rest), rest
        r.close()
    keep.close()


# ----------------------------------------------------------- IMAP import ---

N = 500


def _set_active(g, active: bool):
    g.config["mailbox"][0]["upstream"]["active"] = active
    g.config_path.write_text(to_toml(g.config))


@pytest.mark.parametrize("mode", ["label", "move"])
def test_sigterm_during_imap_import(make_gateway, dovecot, mode):
    d = dovecot
    mids = [new_msgid() for _ in range(N)]
    d.append("INBOX", [make_msg(f"{mode} stop {i}", msgid=m) for i, m in enumerate(mids)])
    over = {"after_import": mode}
    if mode == "move":
        over["processed_folder"] = "INBOX.done"
    g = gateway_with(make_gateway, upstream(d, "imap", "tls", **over))
    wait_until(lambda: message_count(g) >= 100, 180, "100 imported", interval=0.02, g=g, d=d)
    rc = g.stop(signal.SIGTERM)
    assert rc == 0, f"SIGTERM during an import must end with exit code 0, got {rc}\n{g.log_tail()}"
    assert_orderly_exit(g, workers=True)

    # What the upstream shows as done at the moment the gateway exited.
    if mode == "label":
        ids = d.message_ids("INBOX")
        marked = {ids[uid] for uid, flags in d.flags("INBOX") if PROCESSED in flags}
    else:
        marked = set(d.message_ids("INBOX.done").values())
        flagged = [uid for uid, flags in d.flags("INBOX") if PROCESSED in flags]
        assert not flagged, f"{len(flagged)} flagged but never moved: the session was not finished"
    assert 0 < len(marked) < N, f"{len(marked)} marked: the stop did not fall mid-import"

    # The store as it was left, without a new sync.
    _set_active(g, False)
    g.start()
    committed = collections.Counter(strip_brackets(m["message_id"]) for m in ticket_messages(g))
    assert max(committed.values()) == 1
    assert set(committed) == marked, (
        f"at exit, {len(set(committed) - marked)} committed messages were not marked upstream "
        f"and {len(marked - set(committed))} marked ones not committed: a worker was cut off "
        f"between its commit and its mark")
    g.stop()

    _set_active(g, True)
    start_gateway(g)
    wait_until(lambda: message_count(g) == N, 180, f"all {N} imported", g=g, d=d)
    before = mailbox(g)["last_success"]
    wait_until(lambda: mailbox(g)["last_success"] != before, 30, "another poll", g=g)
    got = collections.Counter(strip_brackets(m["message_id"]) for m in ticket_messages(g))
    assert set(got) == set(mids) and max(got.values()) == 1, \
        f"{len(set(mids) - set(got))} missing, {sum(v > 1 for v in got.values())} twice"
    if mode == "label":
        left = [uid for uid, flags in d.flags("INBOX") if not {"\\Seen", PROCESSED} <= flags]
        assert not left, f"{len(left)} messages left unread/unlabelled upstream"
    else:
        assert d.count("INBOX") == 0, f"{d.count('INBOX')} left in INBOX"
        assert d.count("INBOX.done") == N
    g.stop()
    assert_orderly_exit(g, which=g.starts, workers=True)
