"""Two gateways answering each other through a real Postfix: a.test's
acknowledgement goes to b.test's mailbox, which must not answer an automatic
message; the loop stops after one message, and what each side did is
recorded (a ticket and its acknowledgement at A, an auto_submitted rejection
at B). A second round shows A does not acknowledge B's automatic mail either.
"""
from __future__ import annotations

import time

from mailmsg import make_msg, new_msgid
from postfix import Postfix


def gateway(make_gateway, postfix: Postfix, domain: str, local: str):
    cfg = {
        "server": {"domains": [domain]},
        "mailbox": [{"name": local, "addresses": [f"{local}@{domain}"], "default": True}],
        "relay": postfix.relay_config(security="none", auth=False),
        "outbound": {"retry_initial": "1s"},
    }
    return make_gateway(cfg)


def settle(gateways, postfix, timeout=60):
    """Until every outbox is empty of pending work and Postfix's queue too,
    stable for a second."""
    deadline = time.time() + timeout
    quiet_since = None
    while time.time() < deadline:
        pending = sum(len(g.api("/api/v1/outbound", {"state": s})["outbound"])
                      for g in gateways for s in ("queued", "deferred"))
        if pending == 0 and postfix.queued() == 0:
            quiet_since = quiet_since or time.time()
            if time.time() - quiet_since > 1.5:
                return
        else:
            quiet_since = None
        time.sleep(0.2)
    raise AssertionError(f"the gateways did not settle:\n{postfix.log_tail()}")


def test_two_gateways_do_not_loop(make_gateway):
    postfix = Postfix().start()
    try:
        a = gateway(make_gateway, postfix, "a.test", "support")
        b = gateway(make_gateway, postfix, "b.test", "help")
        postfix.route("a.test", a.ports["smtp"])
        postfix.route("b.test", b.ports["smtp"])
        # B's address writes to A (as a person would).
        first = make_msg("Printer on fire", msgid=new_msgid(), from_="Help Desk B <help@b.test>",
                         to="support@a.test")
        _, t = a.stored(a.send(first, mail_from="help@b.test", rcpts=["support@a.test"]))
        settle([a, b], postfix)

        # A: one ticket, one message, its acknowledgement sent to B.
        assert [x["id"] for x in a.tickets()] == [t["id"]]
        assert a.ticket(t["id"])["message_count"] == 1
        sent = a.api("/api/v1/outbound", {"state": "sent"})["outbound"]
        assert [e["rcpt_to"] for e in sent] == [["help@b.test"]], sent
        # B: it arrived, was recognised as automatic, and nothing answered it.
        assert b.tickets() == []
        rej = b.rejections()
        assert [r["reason"] for r in rej] == ["auto_submitted"], rej
        assert rej[0]["from"] == "support@a.test"
        assert b.api("/api/v1/outbound")["outbound"] == []

        # B's automatic mail to A (e.g. its own out-of-office) threads onto
        # A's ticket flagged, and A does not acknowledge it.
        ack_id = a.api(f"/api/v1/messages/{sent[0]['id']}")["message_id"]
        ooo = make_msg("Out of office", msgid=new_msgid(), from_="help@b.test", to="support@a.test",
                       in_reply_to=ack_id, headers=[("Auto-Submitted", "auto-replied")])
        a.send(ooo, mail_from="help@b.test", rcpts=["support@a.test"])
        settle([a, b], postfix)
        ticket = a.ticket(t["id"])
        assert ticket["message_count"] == 2
        assert ticket["messages"][-1]["auto_submitted"] is True
        assert len(a.api("/api/v1/outbound")["outbound"]) == 1, "no second acknowledgement"
        assert len(b.rejections()) == 1
    finally:
        postfix.close()
