"""Group commit with a client parked inside DATA: the others' messages are
committed and acknowledged while it stays parked, in transactions of their own
(the writer commits what it holds and waits for no session still uploading),
and the parked message is stored whole when it finally ends."""

import select
import threading

from mailmsg import make_msg, new_msgid


def _silent(raw) -> bool:
    """True while the gateway has sent the parked client nothing (no reply,
    no close): its DATA is still open on the server's side."""
    readable, _, _ = select.select([raw.sock], [], [], 0)
    return not readable and not raw.buf


def _commits(g) -> tuple[float, float]:
    m = g.metrics()
    return (m.get("mailgate_store_commit_batch_size_count"),
            m.get("mailgate_store_commit_batch_size_sum"))


def _park(g, subject: str):
    """A client inside DATA: 354 received, half a message sent, no end."""
    raw = g.raw_smtp(timeout=120)
    raw.expect("EHLO parked.test", 250)
    raw.expect("MAIL FROM:<parked@client.test>", 250)
    raw.expect("RCPT TO:<support@example.test>", 250)
    raw.expect("DATA", 354)
    mid = new_msgid()
    head = (f"From: Parked <parked@client.test>\r\nTo: support@example.test\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{mid}>\r\n\r\n").encode()
    raw.send(head + b"first half of the body\r\n")
    return raw, mid


def _finish(g, raw, subject: str, mid: str):
    raw.send(b"second half of the body\r\n.\r\n")
    code, text = raw.reply()
    assert code == 250, f"the parked message, once ended: {code} {text}"
    raw.expect("QUIT", 221)
    raw.close()
    found = [t for t in g.tickets() if t["subject"] == subject]
    assert len(found) == 1, f"parked message {subject!r} stored {len(found)} times"
    msgs = g.ticket(found[0]["id"])["messages"]
    body = g.raw("messages", msgs[0]["id"]).body
    assert f"<{mid}>".encode() in body
    assert b"first half of the body\r\nsecond half of the body\r\n" in body


def test_a_client_parked_in_data_stalls_no_one(make_gateway):
    g = make_gateway()
    raw, parked_mid = _park(g, "parked upload")
    assert _silent(raw)
    before = _commits(g)
    n = 12
    with g.smtp() as s:
        for i in range(n):
            reply = g.send(make_msg(f"while parked {i}", msgid=new_msgid()), smtp=s)
            # Committed (readable through the API) and acknowledged ...
            m, t = g.stored(reply)
            assert t["subject"] == f"while parked {i}"
            # ... while the parked session is still inside its DATA.
            assert _silent(raw), f"the parked client heard something after message {i}"
    after = _commits(g)
    # Each of those messages went through a transaction that committed with
    # the parked session open: at least one transaction per message (nothing
    # else was sending, so none of them could have ridden along with another).
    assert after[0] - before[0] >= n, (before, after)
    assert after[1] - before[1] >= n, (before, after)
    assert g.metrics().get("mailgate_smtp_sessions_active") >= 1
    _finish(g, raw, "parked upload", parked_mid)


def test_concurrent_clients_with_several_parked(make_gateway):
    g = make_gateway()
    parked = [(raw, mid, f"parked {k}") for k, (raw, mid) in
              enumerate(_park(g, f"parked {k}") for k in range(3))]
    per_client, clients = 8, 4
    acked: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(c: int):
        try:
            with g.smtp() as s:
                for i in range(per_client):
                    subject = f"client {c} msg {i}"
                    reply = g.send(make_msg(subject, msgid=new_msgid()), smtp=s)
                    reply.message()
                    with lock:
                        acked.append(subject)
        except BaseException as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert len(acked) == per_client * clients
    for raw, _, subject in parked:
        assert _silent(raw), f"{subject} heard something while parked"
    stored = {t["subject"] for t in g.tickets()}
    assert set(acked) <= stored
    for raw, mid, subject in parked:
        _finish(g, raw, subject, mid)
