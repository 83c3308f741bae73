"""Ticket notifications delivered through a real Postfix relay, checked on
the delivered files: the acknowledgement (Auto-Submitted: auto-replied,
Reply-To, the tag, the template's text), the customer's answer to it
threading back, no acknowledgement for automatic mail, ticket_done to the
requester, and the per-recipient cap recorded on the ticket."""
from __future__ import annotations

import email
import email.policy
import json
import time

from harness import SALES, SUPPORT
from mailmsg import make_msg, new_msgid, unique
from postfix import PASSWORD, PASSWORD_ENV, postfix_relay  # noqa: F401 - fixture

ALICE = "alice@relay.test"  # the customer
BOB = "bob@relay.test"  # the support team


def gateway(make_gateway, postfix, **notify):
    cfg = {
        "relay": postfix.relay_config(),
        "outbound": {"retry_initial": "1s"},
        "notify": {"link": "https://helpdesk.example/tickets/{id}", **notify},
        "mailbox": [dict(SUPPORT, team=[BOB]), dict(SALES)],
    }
    return make_gateway(cfg, env={PASSWORD_ENV: PASSWORD})


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def outbound_to(g, address):
    """Outbox entries (any state) addressed to `address`."""
    entries = list(g.paged("/api/v1/outbound", "outbound", limit=100))
    return [e for e in entries if address in e["rcpt_to"]]


def wait_sent(g, address, count, timeout=30):
    deadline = time.time() + timeout
    while True:
        sent = [e for e in outbound_to(g, address) if e["state"] == "sent"]
        if len(sent) >= count:
            return sent
        if time.time() > deadline:
            raise AssertionError(f"{address}: {outbound_to(g, address)}\n{g.log_tail()}")
        time.sleep(0.1)


def test_the_acknowledgement_arrives_and_the_answer_threads_back(make_gateway, postfix_relay):
    g = gateway(make_gateway, postfix_relay)
    alice_before = len(postfix_relay.maildir_messages(ALICE))
    bob_before = len(postfix_relay.maildir_messages(BOB))
    subject = f"Printer {unique()}"
    first, t = g.stored(g.send(make_msg(subject, msgid=new_msgid(), from_=f"Alice <{ALICE}>",
                                        body="It smokes.\r\n"), mail_from=ALICE))
    ack = parse(postfix_relay.wait_messages(ALICE, alice_before + 1)[-1])
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["X-Auto-Response-Suppress"] == "All"
    assert ack["From"].addresses[0].addr_spec == "support@example.test"
    assert ack["Reply-To"].addresses[0].addr_spec == "support@example.test"
    assert ack["To"].addresses[0].addr_spec == ALICE
    assert ack["Subject"] == f"{t['tag']} We received your request: {subject}"
    assert ack["In-Reply-To"] == f"<{first['message_id']}>"
    body = ack.get_body(("plain",)).get_content()
    assert f"We have opened ticket {t['tag']}" in body, body
    assert f"https://helpdesk.example/tickets/{t['id']}" in body, body
    # The team hears of the new ticket, with the customer's text.
    notice = parse(postfix_relay.wait_messages(BOB, bob_before + 1)[-1])
    assert notice["Auto-Submitted"] == "auto-generated"
    assert notice["Subject"] == f"New ticket {t['tag']}: {subject}"  # the tag once
    assert "It smokes." in notice.get_body(("plain",)).get_content()
    # Not counted among the ticket's messages.
    assert g.ticket(t["id"])["message_count"] == 1

    # Alice answers the acknowledgement from her mail client, subject edited.
    answer = make_msg("my own words", msgid=new_msgid(), from_=f"Alice <{ALICE}>",
                      in_reply_to=ack["Message-ID"].strip("<>"))
    _, t2 = g.stored(g.send(answer, mail_from=ALICE))
    assert t2["id"] == t["id"] and t2["message_count"] == 2
    # Her out-of-office answering the acknowledgement threads too, and
    # neither gets an acknowledgement (the team hears of both).
    auto = make_msg("Out of office", msgid=new_msgid(), from_=f"Alice <{ALICE}>",
                    in_reply_to=ack["Message-ID"].strip("<>"),
                    headers=[("Auto-Submitted", "auto-replied")])
    m3, t3 = g.stored(g.send(auto, mail_from=ALICE))
    assert t3["id"] == t["id"] and m3["auto_submitted"] is True
    wait_sent(g, BOB, 3)
    assert len(outbound_to(g, ALICE)) == 1, outbound_to(g, ALICE)

    # Done: the requester is told.
    r = g.http("PATCH", f"/api/v1/tickets/{t['id']}", token=g.token,
               headers={"Content-Type": "application/json"},
               body=json.dumps({"status": "done", "by": BOB}).encode())
    assert r.status == 200, r.body
    done = parse(postfix_relay.wait_messages(ALICE, alice_before + 2)[-1])
    assert done["Subject"] == f"{t['tag']} Done: {subject}"
    assert done["Auto-Submitted"] == "auto-generated"
    assert done["Reply-To"].addresses[0].addr_spec == "support@example.test"
    assert "closed it as done" in done.get_body(("plain",)).get_content()
    assert not [e for e in g.ticket(t["id"])["events"]
                if e["change"] == "notification_suppressed"]


def test_the_per_recipient_cap_holds_and_is_recorded(make_gateway, postfix_relay):
    g = gateway(make_gateway, postfix_relay, per_recipient_limit=2)
    tickets = []
    for _ in range(3):
        _, t = g.stored(g.send(make_msg(f"Again {unique()}", msgid=new_msgid(),
                                        from_=f"Alice <{ALICE}>"), mail_from=ALICE))
        tickets.append(t)
    wait_sent(g, ALICE, 2)
    assert len(outbound_to(g, ALICE)) == 2
    events = [e for e in g.ticket(tickets[2]["id"])["events"]
              if e["change"] == "notification_suppressed"]
    assert {"notification": "acknowledgement", "recipient": ALICE,
            "reason": "recipient_limit"} in [
        {k: e[k] for k in ("notification", "recipient", "reason")} for e in events], events
    # The team's cap too, and across a restart.
    assert any(e["recipient"] == BOB and e["reason"] == "recipient_limit" for e in events)
    g.restart()
    _, t4 = g.stored(g.send(make_msg(f"After restart {unique()}", msgid=new_msgid(),
                                     from_=f"Alice <{ALICE}>"), mail_from=ALICE))
    assert len(outbound_to(g, ALICE)) == 2
    reasons = [e["reason"] for e in g.ticket(t4["id"])["events"]
               if e["change"] == "notification_suppressed"]
    assert reasons == ["recipient_limit", "recipient_limit"], reasons
