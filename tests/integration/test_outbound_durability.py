"""The outbox survives kill -9 while it drains: after the restart every queued
reply is delivered through a real Postfix relay, none is lost or stuck, and a
second copy exists only where the kill fell inside the one window the design
allows.

The window: the send worker hands a message to the relay, the relay takes it
(its queue file is complete, it answers `250 ... queued as QID`), and only
then is the `sent` mark committed through the group-commit writer. A kill
between the relay's acceptance and that commit leaves the entry pending; the
next start sends it again, and the customer gets a second copy. The window
includes the QUIT exchange: the transport says QUIT and waits for the reply
(at most relay.command_timeout) before the worker records `sent`. The worker
sends one message at a time, so each kill opens the window for at most one
message. Random kills rarely land in it (none did in a dozen runs here);
the third test below lands one there on purpose.

How the test tells a copy explained by the window from a real duplicate:
after each kill (the gateway is down, nothing new reaches the relay) it waits
until the relay's queue is empty and notes the queue ids of everything
delivered so far. That splits the run into segments, one per gateway run. A
duplicated reply is explained when its copies lie in different segments
(the earlier copy was taken by the relay before a kill), at most one
duplicate's earlier copy lies in any killed segment, and the relay reply
recorded with `sent` names the queue id of the last copy (the earlier ones
were never recorded). Every other reply has exactly one copy, the one whose
queue id the entry records.

A third test puts a kill inside the window on purpose, so the
second copy is seen, not only allowed: a small TCP relay between the gateway
and Postfix's plain port passes everything, but on its first connection it
holds back what Postfix says after `250 ... queued as` (the `221` to QUIT).
The gateway then has the relay's 250 and waits for the QUIT reply before it
records `sent`; it is killed there.

Kill points are seeded random (MAILGATE_TEST_SEED overrides the seed; it is
printed), placed by progress (after a random number of deliveries plus a
random delay up to 40 ms), so they fall while the queue drains; nothing
asserts how long anything takes. The counts are printed (`pytest -s`).
"""
from __future__ import annotations

import email
import email.policy
import json
import os
import random
import re
import signal
import socket
import threading
import time
import uuid

from harness import SALES, SUPPORT
from mailmsg import make_msg, new_msgid
from postfix import PASSWORD, PASSWORD_ENV, postfix_relay  # noqa: F401 - fixture

ALICE = "alice@relay.test"
SEED = int(os.environ.get("MAILGATE_TEST_SEED", "20260107"))

# The relay's queue id as Postfix writes it in its Received header and in
# its final reply ("250 2.0.0 Ok: queued as 4dZ7Yk1q2Hz3y").
RECEIVED_ID_RE = re.compile(r"\(Postfix\)\s+with\s+\S+\s+id\s+([0-9A-Za-z]+)")
QUEUED_AS_RE = re.compile(r"queued as ([0-9A-Za-z]+)")


# Only the agents' replies: no acknowledgements, which would come first on
# every ticket (test_notifications.py covers those).
NO_ACK = [dict(SUPPORT, notify={"acknowledgement": {"active": False}}), dict(SALES)]


def gateway(make_gateway, postfix):
    """A gateway sending through the relay with every send limit off."""
    cfg = {"relay": postfix.relay_config(), "mailbox": NO_ACK,
           "outbound": {"retry_initial": "1s", "messages_per_minute": 0,
                        "bytes_per_5_minutes": 0, "recipients_per_day": 0}}
    return make_gateway(cfg, env={PASSWORD_ENV: PASSWORD})


def queue_replies(g, n: int, run: str) -> dict[int, str]:
    """n tickets from Alice, one reply queued on each; {outbox id: token}."""
    tickets = []
    for i in range(n):
        _, t = g.stored(g.send(make_msg(f"Order {run}-{i}", msgid=new_msgid(),
                                        from_=f"Alice <{ALICE}>")))
        tickets.append(t["id"])
    queued = {}
    for i, tid in enumerate(tickets):
        token = f"durability-{run}-{i:03d}"
        r = g.http("POST", f"/api/v1/tickets/{tid}/reply", token=g.token,
                   headers={"Content-Type": "application/json"},
                   body=json.dumps({"text": f"Your order ships.\r\nref {token}"}).encode())
        assert r.status == 201, r.body
        body = r.json()
        assert body["queued"] is True, body
        queued[body["message_id"]] = token
    return queued


class Deliveries:
    """What reached Alice's Maildir for this test's run, by queue id."""

    def __init__(self, relay, run: str):
        self.relay = relay
        self.marker = f"durability-{run}-".encode()
        # queue id -> (token, X-Mailgate-Message-Id)
        self.copies: dict[str, tuple[str, int]] = {}
        # queue id -> the segment (gateway run) in which the relay took it
        self.segment: dict[str, int] = {}

    def scan(self) -> dict[str, tuple[str, int]]:
        found = {}
        for raw in self.relay.maildir_messages(ALICE):
            if self.marker not in raw:
                continue
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            qid = RECEIVED_ID_RE.search(str(msg["Received"]))
            assert qid, f"no Postfix queue id in Received: {msg['Received']!r}"
            token = re.search(rb"durability-[0-9a-f]+-\d{3}", raw).group().decode()
            found[qid.group(1)] = (token, int(msg["X-Mailgate-Message-Id"]))
        self.copies = found
        return found

    def count(self) -> int:
        return sum(1 for raw in self.relay.maildir_messages(ALICE) if self.marker in raw)

    def close_segment(self, index: int):
        """The gateway is down: everything the relay took is delivered; note
        which queue ids this segment added."""
        self.relay.wait_queue_empty()
        for qid in self.scan():
            self.segment.setdefault(qid, index)


def wait_deliveries(d: Deliveries, count: int, timeout: float = 120) -> bool:
    """Until `count` copies arrived (True) or the time is up (False)."""
    deadline = time.monotonic() + timeout
    while d.count() < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def outbox(g, state: str) -> list[dict]:
    return list(g.paged("/api/v1/outbound", "outbound", {"state": state}))


def wait_drained(g, ids, timeout: float = 180) -> list[dict]:
    """Until every entry in `ids` is sent; fails naming what is left."""
    deadline = time.monotonic() + timeout
    while True:
        sent = {e["id"]: e for e in outbox(g, "sent")}
        if set(ids) <= set(sent):
            return [sent[i] for i in ids]
        if time.monotonic() > deadline:
            left = {s: [e["id"] for e in outbox(g, s)] for s in ("queued", "deferred", "failed")}
            raise AssertionError(f"{len(set(ids) - set(sent))} entries not sent: {left}\n"
                                 f"{g.log_tail()}")
        time.sleep(0.1)


def kill_and_restart(g, d: Deliveries, segment: int):
    rc = g.stop(signal.SIGKILL)
    assert rc == -signal.SIGKILL, rc
    d.close_segment(segment)
    g.start()


def check_outcome(g, relay, d: Deliveries, queued: dict[int, str], kills: int, label: str):
    """Every reply delivered, every entry sent, and each second copy explained."""
    entries = {e["id"]: e for e in wait_drained(g, list(queued))}
    for state in ("queued", "deferred", "failed"):
        assert outbox(g, state) == [], f"entries left {state}"
    relay.wait_queue_empty()
    d.close_segment(kills)  # the last segment: the run that drained the queue
    by_token: dict[str, list[str]] = {}
    for qid, (token, mid) in d.copies.items():
        assert queued.get(mid) == token, f"copy {qid}: X-Mailgate-Message-Id {mid} carries {token}"
        by_token.setdefault(token, []).append(qid)
    missing = sorted(set(queued.values()) - set(by_token))
    assert not missing, f"replies never delivered: {missing}"

    duplicates = {}
    for mid, token in queued.items():
        e = entries[mid]
        assert e["state"] == "sent", e
        recorded = QUEUED_AS_RE.search(e["relay_reply"] or "")
        assert recorded, f"outbound {mid}: no queue id in relay_reply {e['relay_reply']!r}"
        copies = sorted(by_token[token], key=lambda q: d.segment[q])
        # The recorded 250 is the last copy's: earlier ones were never marked.
        assert recorded.group(1) == copies[-1], (mid, e["relay_reply"], copies)
        if len(copies) > 1:
            segments = [d.segment[q] for q in copies]
            assert len(set(segments)) == len(segments), \
                f"outbound {mid}: two copies within one gateway run {segments}: not the window"
            duplicates[mid] = (copies, segments, e["attempts"])
    # One message in flight at a time: a kill explains at most one duplicate.
    earlier = [s for copies, segments, _ in duplicates.values() for s in segments[:-1]]
    for s in set(earlier):
        assert earlier.count(s) == 1, f"kill {s} left {earlier.count(s)} second copies"
    assert len(d.copies) == len(queued) + sum(len(c) - 1 for c, _, _ in duplicates.values())
    print(f"\n[{label}] seed={SEED} replies={len(queued)} kills={kills} "
          f"delivered={len(d.copies)} duplicates={len(duplicates)} "
          f"(kill fell between the relay's 250 and the sent mark)")
    for mid, (copies, segments, attempts) in sorted(duplicates.items()):
        print(f"[{label}]   outbound {mid}: queue ids {copies} in gateway runs {segments}, "
              f"recorded {entries[mid]['relay_reply']!r}, attempts {attempts}")
    return duplicates


def test_kill_9_while_the_queue_drains_loses_nothing(make_gateway, postfix_relay):
    rng = random.Random(SEED)
    run = uuid.uuid4().hex[:8]
    n = 60
    g = gateway(make_gateway, postfix_relay)
    d = Deliveries(postfix_relay, run)
    queued = queue_replies(g, n, run)
    # Kill points: after a random number of deliveries, spread over the
    # drain, each a random moment within the next message or two.
    targets = sorted(rng.sample(range(1, n - 4), 4))
    kills = 0
    at = []
    for target in targets:
        if not wait_deliveries(d, target) or d.count() >= n:
            break
        time.sleep(rng.uniform(0, 0.04))
        at.append(d.count())
        kill_and_restart(g, d, kills)
        kills += 1
    assert kills >= 1, "the queue drained before the first kill"
    print(f"\n[kill -9 while draining] killed after {at} of {n} deliveries")
    dups = check_outcome(g, postfix_relay, d, queued, kills, "kill -9 while draining")
    assert len(dups) <= kills


def test_relay_down_then_back_with_kills_delivers_every_reply(make_gateway, postfix_relay):
    rng = random.Random(SEED + 1)
    run = uuid.uuid4().hex[:8]
    n = 20
    g = gateway(make_gateway, postfix_relay)
    d = Deliveries(postfix_relay, run)
    postfix_relay.stop()
    try:
        queued = queue_replies(g, n, run)
        # queued -> deferred: every entry tried and refused at connect.
        deadline = time.monotonic() + 60
        while len(deferred := outbox(g, "deferred")) < n:
            assert time.monotonic() < deadline, f"{len(deferred)} of {n} deferred:\n{g.log_tail()}"
            time.sleep(0.1)
        for e in deferred:
            assert e["attempts"] >= 1 and e["last_error"].startswith("connect"), e
        # The deferred state survives kill -9: nothing is sent, nothing
        # starts over at attempt 0.
        kill_and_restart(g, d, 0)
        for mid in queued:
            e = g.api(f"/api/v1/outbound/{mid}")
            assert e["state"] in ("queued", "deferred") and e["attempts"] >= 1, e
        assert outbox(g, "sent") == []
    finally:
        postfix_relay.start()
    # Back: the retries deliver; one more kill while they drain.
    kills = 1
    target = rng.randrange(1, n // 2)
    if wait_deliveries(d, target) and d.count() < n:
        time.sleep(rng.uniform(0, 0.04))
        kill_and_restart(g, d, kills)
        kills += 1
    check_outcome(g, postfix_relay, d, queued, kills, "relay down, then back")
    for mid in queued:
        e = g.api(f"/api/v1/outbound/{mid}")
        # At least one refused attempt before the one that went through.
        assert e["attempts"] >= 2, e


class HoldAfterAccept:
    """A TCP pass-through to the relay that, while armed, withholds from the
    client everything the relay says after its first `queued as` reply (the
    answer to QUIT), and sets `held` once the relay has sent that answer.
    The message is then in the relay's queue, the client has the 250 and is
    still waiting for the 221."""

    def __init__(self, port: int):
        self.target = port
        self.armed = True
        self.held = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [client, server]
            hold = self.armed
            self.armed = False
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, hold), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, hold: bool):
        accepted = False
        try:
            while data := src.recv(65536):
                if accepted:
                    self.held.set()
                    continue  # the QUIT reply: never forwarded
                dst.sendall(data)
                accepted = hold and b"queued as" in data
        except OSError:
            pass
        if accepted:
            return  # the client keeps waiting for the 221 (closed by close())
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_a_kill_between_the_relays_250_and_the_sent_mark_sends_one_second_copy(
        make_gateway, postfix_relay):
    run = uuid.uuid4().hex[:8]
    proxy = HoldAfterAccept(postfix_relay.plain_port)
    try:
        relay = postfix_relay.relay_config(security="none", auth=False, port=proxy.port)
        g = make_gateway({"relay": relay, "mailbox": NO_ACK,
                          "outbound": {"retry_initial": "1s", "messages_per_minute": 0,
                                       "bytes_per_5_minutes": 0, "recipients_per_day": 0}})
        d = Deliveries(postfix_relay, run)
        queued = queue_replies(g, 3, run)
        assert proxy.held.wait(60), f"the first send never reached QUIT:\n{g.log_tail()}"
        # The relay has the message; the gateway has its 250 but no mark yet.
        assert outbox(g, "sent") == []
        kill_and_restart(g, d, 0)
        first = [mid for _, mid in d.copies.values()]
        assert len(first) == 1 and first[0] in queued, d.copies
        dups = check_outcome(g, postfix_relay, d, queued, 1, "kill inside the window")
    finally:
        proxy.close()
    assert set(dups) == {first[0]}, dups
    copies, segments, attempts = dups[first[0]]
    assert segments == [0, 1] and attempts == 1, dups
