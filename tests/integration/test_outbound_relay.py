"""Agent replies delivered through a real Postfix relay (STARTTLS with the
private CA, SASL AUTH), checked on the delivered file: the header policy,
the reply token, the thread; the customer's answer built from the delivered
file threads back. Relay refusals fail with the reply, a relay that is down
keeps the mail queued until it is back, and the send limit holds across a
restart."""
from __future__ import annotations

import email
import email.policy
import json
import re
import time

from harness import SALES, SUPPORT
from mailmsg import make_msg, new_msgid, unique
from postfix import PASSWORD, PASSWORD_ENV, postfix_relay  # noqa: F401 - fixture

ALICE = "alice@relay.test"


def gateway(make_gateway, postfix, **outbound):
    # Only the agents' replies here: no acknowledgement to the customer
    # (test_notifications.py covers those).
    support = dict(SUPPORT, notify={"acknowledgement": {"active": False}})
    cfg = {"relay": postfix.relay_config(), "outbound": {"retry_initial": "1s", **outbound},
           "mailbox": [support, dict(SALES)]}
    return make_gateway(cfg, env={PASSWORD_ENV: PASSWORD})


def post(g, path, body):
    return g.http("POST", path, token=g.token, headers={"Content-Type": "application/json"},
                  body=json.dumps(body).encode())


def ticket_from(g, customer=ALICE, subject=None):
    m, t = g.stored(g.send(make_msg(subject or f"Printer {unique()}", msgid=new_msgid(),
                                    from_=f"Alice <{customer}>")))
    return m, t


def reply(g, ticket_id, text="We are on it."):
    r = post(g, f"/api/v1/tickets/{ticket_id}/reply", {"text": text})
    assert r.status == 201, r.body
    return r.json()["message_id"]


def wait_state(g, mid, states, timeout=30):
    deadline = time.time() + timeout
    while True:
        e = g.api(f"/api/v1/outbound/{mid}")
        if e["state"] in states:
            return e
        if time.time() > deadline:
            raise AssertionError(f"outbound {mid} is {e}, not {states}:\n{g.log_tail()}")
        time.sleep(0.1)


def test_a_reply_arrives_with_the_header_policy_and_the_answer_threads_back(make_gateway, postfix_relay):
    g = gateway(make_gateway, postfix_relay)
    before = len(postfix_relay.maildir_messages(ALICE))
    first, t = ticket_from(g)
    mid = reply(g, t["id"], "We are on it.\r\nRegards, Support")
    e = wait_state(g, mid, {"sent"})
    assert re.match(r"250 2\.0\.0 Ok: queued as \S+", e["relay_reply"]), e
    assert e["attempts"] == 1
    got = postfix_relay.wait_messages(ALICE, before + 1)[-1]
    msg = email.message_from_bytes(got, policy=email.policy.default)
    assert msg["From"].addresses[0].addr_spec == "support@example.test"
    assert msg["Reply-To"].addresses[0].addr_spec == "support@example.test"
    assert msg["To"].addresses[0].addr_spec == ALICE
    assert msg["Subject"] == f"{t['tag']} Re: {t['subject']}"
    assert msg["In-Reply-To"] == f"<{first['message_id']}>"
    assert f"<{first['message_id']}>" in msg["References"]
    assert re.fullmatch(r"<mg\.\d+\.\d+\.[0-9a-f]{32}@example\.test>", msg["Message-ID"])
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Mailer"].startswith("mailgate/")
    assert msg["X-Mailgate-Ticket"] == str(t["number"])
    assert msg["X-Mailgate-Message-Id"] == str(mid)
    assert msg["Auto-Submitted"] is None
    assert "We are on it." in msg.get_body(("plain",)).get_content()
    # The message as delivered is the message as stored (plus Postfix's trace).
    stored = g.raw("messages", mid).body
    assert stored.replace(b"\r\n", b"\n").rstrip(b"\n") in got, "delivered != stored"
    m = g.metrics()
    assert m.get("mailgate_outbound_sent_total", mailbox="support") == 1
    assert m.get("mailgate_outbound_queue_depth", mailbox="support") == 0

    # Alice answers from her mail client: In-Reply-To the delivered
    # Message-ID, the subject rewritten.
    answer = make_msg("my own subject line", msgid=new_msgid(), from_=f"Alice <{ALICE}>",
                      in_reply_to=msg["Message-ID"].strip("<>"))
    _, t2 = g.stored(g.send(answer))
    assert t2["id"] == t["id"]


def test_a_permanent_refusal_fails_the_message_with_the_relays_reply(make_gateway, postfix_relay):
    g = gateway(make_gateway, postfix_relay)
    _, t = ticket_from(g)
    postfix_relay.refuse(ALICE, "550 5.7.1 no mail for alice today")
    try:
        mid = reply(g, t["id"])
        e = wait_state(g, mid, {"failed"})
    finally:
        postfix_relay.refuse(ALICE, None)
    assert e["last_error"].startswith("550 5.7.1") and "no mail for alice today" in e["last_error"], e
    msg = [x for x in g.ticket(t["id"])["messages"] if x["id"] == mid][0]
    assert msg["delivery"]["state"] == "failed"
    assert g.metrics().get("mailgate_outbound_failed_total", mailbox="support") == 1


def test_relay_down_keeps_mail_queued_until_it_is_back(make_gateway, postfix_relay):
    g = gateway(make_gateway, postfix_relay)
    _, t = ticket_from(g)
    before = len(postfix_relay.maildir_messages(ALICE))
    postfix_relay.stop()
    try:
        mid = reply(g, t["id"], "sent while the relay was down")
        e = wait_state(g, mid, {"deferred"})
        assert e["last_error"].startswith("connect"), e
        assert e["attempts"] >= 1
    finally:
        postfix_relay.start()
    e = wait_state(g, mid, {"sent"}, timeout=60)
    got = postfix_relay.wait_messages(ALICE, before + 1)
    assert b"sent while the relay was down" in got[-1]
    assert g.metrics().get("mailgate_outbound_deferred_total", mailbox="support",
                           reason="temporary") >= 1


def test_the_send_limit_holds_and_survives_a_restart(make_gateway, postfix_relay):
    g = gateway(make_gateway, postfix_relay, messages_per_minute=2)
    before = len(postfix_relay.maildir_messages(ALICE))
    ids = []
    for _ in range(3):
        _, t = ticket_from(g)
        ids.append(reply(g, t["id"]))
    for mid in ids[:2]:
        wait_state(g, mid, {"sent"})
    third = wait_state(g, ids[2], {"deferred"})
    assert third["last_error"] == "rate_limit:messages_per_window"
    assert third["attempts"] == 0
    assert third["next_attempt_ms"] > int(time.time() * 1000) + 30_000
    assert g.metrics().get("mailgate_outbound_deferred_total", mailbox="support",
                           reason="rate_limit") >= 1
    # A restart does not reset the budget: a new reply waits too.
    g.restart()
    _, t = ticket_from(g)
    fourth = reply(g, t["id"])
    e = wait_state(g, fourth, {"deferred"})
    assert e["last_error"] == "rate_limit:messages_per_window"
    time.sleep(1)
    assert len(postfix_relay.maildir_messages(ALICE)) == before + 2
