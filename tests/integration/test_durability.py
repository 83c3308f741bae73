"""Durability and concurrency: restarts (SIGTERM, SIGKILL after 250) keep every
acknowledged message; parallel clients each get their message stored once."""

import signal
import smtplib
import threading
import time

from mailmsg import make_msg, multipart_with_attachment, new_msgid


def _snapshot(g):
    tickets = {t["id"]: g.ticket(t["id"]) for t in g.tickets()}
    for t in tickets.values():
        # Acknowledgements keep being retried (no relay here): their delivery
        # state moves on by itself; the records themselves must not change.
        t["notifications"] = [{k: v for k, v in n.items() if k != "delivery"}
                              for n in t["notifications"]]
    raws = {}
    for t in tickets.values():
        for m in t["messages"]:
            r = g.raw("messages", m["id"])
            assert r.status == 200
            raws[m["id"]] = r.body
    rejections = {r["id"]: r for r in g.rejections()}
    return tickets, raws, rejections


def test_restart_after_sigterm_keeps_everything(make_gateway):
    g = make_gateway()
    first_mid = new_msgid()
    sent = [make_msg("first", msgid=first_mid)]
    sent += [make_msg(f"Re: first {i}", msgid=new_msgid(), in_reply_to=first_mid) for i in range(3)]
    sent += [make_msg(f"other {i}", msgid=new_msgid()) for i in range(4)]
    sent += [multipart_with_attachment("with file", new_msgid(), "see file", "a.bin",
                                       "application/octet-stream", b"\x00\x01" * 500)]
    sent += [make_msg("to sales", to="sales@example.test", msgid=new_msgid())]
    with g.smtp() as s:
        replies = [g.send(m, smtp=s, rcpts=["sales@example.test"] if b"To: sales@" in m else
                          ["support@example.test"]) for m in sent]
        rej = g.send(make_msg("bulk", headers=[("Precedence", "bulk")]), smtp=s).rejection()
    for r in replies:
        r.message()
    before = _snapshot(g)
    cert = g.cert_path.read_bytes()
    max_number = max(t["number"] for t in before[0].values())

    rc = g.stop(signal.SIGTERM)
    assert rc == 0, f"SIGTERM should be a clean shutdown with exit code 0, got {rc}\n{g.log_tail()}"
    g.start()

    after = _snapshot(g)
    assert after[0] == before[0], "tickets and their messages changed across a restart"
    assert after[1] == before[1], "raw messages changed across a restart"
    assert after[2] == before[2], "rejections changed across a restart"
    assert str(rej.id) in {str(k) for k in after[2]}
    assert g.cert_path.read_bytes() == cert, "the dev certificate must be reused, not regenerated"

    # the store keeps working: threading to old messages, duplicates, numbering
    m, t = g.stored(g.send(make_msg("Re: after restart", msgid=new_msgid(), references=[first_mid])))
    assert t["number"] == replies[0].message().ticket and t["message_count"] == 5
    g.send(sent[1]).one("duplicate")
    assert g.ticket(g.message(replies[1].message().id)["ticket_id"])["message_count"] in (1, 5)
    _, t_new = g.stored(g.send(make_msg("new after restart", msgid=new_msgid())))
    assert t_new["number"] == max_number + 1, "ticket numbers continue after a restart"


def test_sigterm_with_idle_session_exits(make_gateway):
    g = make_gateway()
    r = g.raw_smtp(timeout=90)
    r.expect("EHLO client.test", 250)
    rc = g.stop(signal.SIGTERM)  # fails if it does not exit within the stop timeout
    assert rc == 0, f"exit code {rc}"
    rest = r.replies_until_close()
    assert all(code == 421 for code, _ in rest), f"an open session may only get 421 on shutdown: {rest}"
    r.close()


def _sender(g, stop: threading.Event, acked: list, unacked: list, lock: threading.Lock, prefix: str):
    try:
        s = g.smtp(timeout=30)
    except OSError:
        return
    i = 0
    try:
        while not stop.is_set():
            i += 1
            mid = new_msgid()
            msg = make_msg(f"{prefix} {i}", msgid=mid, body=f"message {i} of {prefix}\r\n" * 20)
            try:
                reply = g.send(msg, smtp=s)
            except (smtplib.SMTPException, OSError, AssertionError):
                with lock:
                    unacked.append((mid, msg))
                return
            with lock:
                if reply.code == 250:
                    acked.append((mid, msg, reply))
                else:
                    unacked.append((mid, msg))
    finally:
        try:
            s.close()
        except Exception:
            pass


def test_sigkill_after_250_loses_nothing(make_gateway):
    g = make_gateway()
    stop = threading.Event()
    acked, unacked, lock = [], [], threading.Lock()
    threads = [threading.Thread(target=_sender, args=(g, stop, acked, unacked, lock, f"kill-{n}"))
               for n in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= 80:
                break
        time.sleep(0.01)
    g.proc.send_signal(signal.SIGKILL)  # while the senders are still mid-transaction
    g.proc.wait(30)
    stop.set()
    for t in threads:
        t.join(60)
    assert len(acked) >= 80, f"only {len(acked)} messages acknowledged before the deadline"

    g.start()
    for mid, _, reply in acked:
        o = reply.message()
        r = g.http("GET", f"/api/v1/messages/{o.id}")
        assert r.status == 200, f"message {o.id} (Message-ID {mid}) was acknowledged with 250 but is lost"
        assert r.json()["message_id"] == mid
    stored_ids = [m["message_id"] for t in g.tickets() for m in g.ticket(t["id"])["messages"]]
    assert len(stored_ids) == len(set(stored_ids)), "a message is stored twice"
    assert {mid for mid, _, _ in acked} <= set(stored_ids)

    # A client retrying what it never got a 250 for gets a new message or a duplicate.
    for mid, msg in unacked:
        reply = g.send(msg)
        assert reply.code == 250 and reply.outcomes and reply.outcomes[0].kind in ("message", "duplicate"), \
            f"retry of {mid}: {reply}"
    stored_ids = [m["message_id"] for t in g.tickets() for m in g.ticket(t["id"])["messages"]]
    assert len(stored_ids) == len(set(stored_ids)), "a retried message is stored twice"
    assert len(stored_ids) == len(acked) + len(unacked)


def test_parallel_clients(make_gateway):
    g = make_gateway()
    n_threads, per_thread = 16, 25
    results: dict[int, list] = {}
    errors = []

    def worker(n):
        out = []
        try:
            with g.smtp(timeout=120) as s:
                for i in range(per_thread):
                    mid = new_msgid(f"t{n}.client.test")
                    reply = g.send(make_msg(f"parallel {n}/{i}", msgid=mid), smtp=s)
                    out.append((mid, reply))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"thread {n}: {e!r}")
        results[n] = out

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors
    sent = [x for n in range(n_threads) for x in results[n]]
    assert len(sent) == n_threads * per_thread
    bad = [str(r) for _, r in sent if not (r.code == 250 and len(r.outcomes) == 1
                                            and r.outcomes[0].kind == "message")]
    assert not bad, f"{len(bad)} replies were not 'message ... in ticket ...', e.g. {bad[:3]}"
    ids = [r.outcomes[0].id for _, r in sent]
    numbers = [r.outcomes[0].ticket for _, r in sent]
    assert len(set(ids)) == len(ids), "two messages got the same id"
    assert len(set(numbers)) == len(numbers), "two new tickets got the same number"
    assert min(numbers) == 1000

    assert g.store_counts() == (len(sent), 0)
    for mid, r in sent:
        m = g.message(r.outcomes[0].id)
        assert m["message_id"] == mid
    tickets = g.tickets()
    assert len(tickets) == len(sent) and all(t["message_count"] == 1 for t in tickets)


def test_parallel_replies_to_one_ticket(make_gateway):
    g = make_gateway()
    root = new_msgid()
    _, t = g.stored(g.send(make_msg("root", msgid=root)))
    errors = []

    def worker(n):
        try:
            with g.smtp(timeout=120) as s:
                for i in range(10):
                    g.send(make_msg(f"Re: root {n}/{i}", msgid=new_msgid(), in_reply_to=root), smtp=s).message()
        except Exception as e:  # noqa: BLE001
            errors.append(f"thread {n}: {e!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(600)
    assert not errors, errors
    full = g.ticket(t["id"])
    assert full["message_count"] == 81 and len(full["messages"]) == 81
    assert len(g.tickets()) == 1
