"""What mail rules send, delivered through a real Postfix relay and checked
on the delivered files: a forward with the original attached byte for byte
and our loop headers (and the same forward coming back is not forwarded
again, nor is an auto-reply to it), an inline forward, and a preset answer sent once per sender per
window and never to an auto-reply."""
from __future__ import annotations

import email
import email.policy
import time

from mailmsg import make_msg, multipart_with_attachment, new_msgid, unique
from postfix import PASSWORD, PASSWORD_ENV, postfix_relay  # noqa: F401 - fixture

ALICE = "alice@relay.test"  # the customer
BOB = "bob@relay.test"  # where the rule forwards to


def gateway(make_gateway, postfix, tmp_path, rules):
    answers = tmp_path / "templates" / "answers"
    answers.mkdir(parents=True)
    (answers / "welcome.txt").write_text(
        "Subject: Thanks for writing, {{ requester.name }}\n\n"
        "We read every message; yours is {{ ticket.tag }}.\n")
    cfg = {
        "relay": postfix.relay_config(),
        "outbound": {"retry_initial": "1s"},
        "notify": {"templates_dir": str(tmp_path / "templates")},
        # No team: nobody but the rules' recipients gets mail at BOB.
        "mailbox": [{"name": "support", "addresses": ["support@example.test"],
                     "queue": "Support", "default": True, "rule": rules}],
    }
    return make_gateway(cfg, env={PASSWORD_ENV: PASSWORD})


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def rule_events(g, ticket_id):
    return [e for e in g.ticket(ticket_id)["events"]
            if e["change"] == "rule_mail"
            or (e["change"] == "notification_suppressed" and ":" in e["notification"])]


def wait_event(g, ticket_id, count, timeout=30):
    deadline = time.time() + timeout
    while len(rule_events(g, ticket_id)) < count:
        assert time.time() < deadline, (rule_events(g, ticket_id), g.log_tail())
        time.sleep(0.1)
    return rule_events(g, ticket_id)


def test_a_forward_carries_the_original_and_does_not_loop(make_gateway, postfix_relay, tmp_path):
    g = gateway(make_gateway, postfix_relay, tmp_path, [
        {"name": "vendor invoices", "when": [{"field": "subject", "contains": "invoice"}],
         "forward": [BOB]},
    ])
    before = len(postfix_relay.maildir_messages(BOB))
    subject = f"Invoice {unique()}"
    msg = multipart_with_attachment(subject, new_msgid(), "Please pay.", "inv.pdf",
                                    "application/pdf", b"%PDF-1.4 not really")
    m, t = g.stored(g.send(msg, mail_from="alice@client.test"))
    fwd = parse(postfix_relay.wait_messages(BOB, before + 1)[-1])
    assert fwd["Subject"] == f"{t['tag']} Fwd: {subject}"
    assert fwd["From"].addresses[0].addr_spec == "support@example.test"
    assert fwd["Reply-To"].addresses[0].addr_spec == "support@example.test"
    assert fwd["Auto-Submitted"] == "auto-generated"
    assert fwd["X-Auto-Response-Suppress"] == "All"
    assert fwd["X-Mailgate-Ticket"] == str(t["number"])
    assert fwd["In-Reply-To"] == f"<{m['message_id']}>"
    text = fwd.get_body(("plain",)).get_content()
    assert 'Forwarded by the mail rule "vendor invoices"' in text, text
    assert "From: Alice Example <alice@client.test>" in text, text
    parts = [p for p in fwd.iter_attachments()]
    assert [p.get_content_type() for p in parts] == ["message/rfc822"], parts
    # The attached original is the message as the gateway keeps it, byte
    # for byte (Postfix added its Received line to the outer message only).
    kept = g.raw("messages", m["id"]).body
    assert kept.endswith(msg)
    inner = parts[0].get_payload()[0]
    assert inner["Message-ID"] == f"<{m['message_id']}>"
    raw_fwd = postfix_relay.wait_messages(BOB, before + 1)[-1]
    assert kept.replace(b"\r\n", b"\n") in raw_fwd.replace(b"\r\n", b"\n")
    events = wait_event(g, t["id"], 1)
    assert events[0]["rule"] == "vendor invoices" and events[0]["action"] == "forward", events
    assert events[0]["to"] == [BOB] and events[0]["by"] == "mail rules", events
    sent = g.api(f"/api/v1/outbound/{events[0]['message']}")
    assert sent["rcpt_to"] == [BOB], sent

    # Bob's list sends the forward back to support: our own mail coming
    # back is refused as a loop, not filed, not forwarded again.
    back = g.send(raw_fwd, mail_from=BOB).rejection()
    assert back.reason == "loop", back
    # Bob's out-of-office answers the forward: it threads onto the ticket
    # (automatic mail) and is not forwarded back to him.
    ooo = make_msg(f"Out of office: {subject}", msgid=new_msgid(), from_=f"Bob <{BOB}>",
                   in_reply_to=fwd["Message-ID"].strip("<>"),
                   headers=[("Auto-Submitted", "auto-replied")])
    m3, t3 = g.stored(g.send(ooo, mail_from=BOB))
    assert t3["id"] == t["id"] and m3["auto_submitted"] is True, m3
    events = wait_event(g, t["id"], 2)
    assert {k: events[1][k] for k in ("notification", "reason")} == {
        "notification": "forward:vendor invoices", "reason": "automatic_mail"}, events
    time.sleep(1)
    assert len(postfix_relay.maildir_messages(BOB)) == before + 1


def test_an_inline_forward_quotes_the_text_and_keeps_attachments(make_gateway, postfix_relay,
                                                                  tmp_path):
    g = gateway(make_gateway, postfix_relay, tmp_path, [
        {"name": "copy", "when": [], "forward": [BOB], "forward_mode": "inline"},
    ])
    before = len(postfix_relay.maildir_messages(BOB))
    msg = multipart_with_attachment(f"Report {unique()}", new_msgid(), "Numbers attached.",
                                    "q3.csv", "text/csv", b"a,b\r\n1,2\r\n")
    g.stored(g.send(msg))
    fwd = parse(postfix_relay.wait_messages(BOB, before + 1)[-1])
    text = fwd.get_body(("plain",)).get_content()
    assert "---------- Forwarded message ----------" in text and "Numbers attached." in text, text
    parts = list(fwd.iter_attachments())
    assert [(p.get_filename(), p.get_content()) for p in parts] == [("q3.csv", "a,b\r\n1,2\r\n")] \
        or [(p.get_filename(), p.get_content().replace("\r\n", "\n")) for p in parts] == [
            ("q3.csv", "a,b\n1,2\n")], parts


def test_a_preset_answer_goes_once_per_window_and_never_to_automatic_mail(
        make_gateway, postfix_relay, tmp_path):
    g = gateway(make_gateway, postfix_relay, tmp_path, [
        {"name": "welcome", "when": [{"field": "from", "ends_with": "@relay.test"}],
         "answer": "welcome", "answer_window": "1h"},
    ])
    before = len(postfix_relay.maildir_messages(ALICE))
    subject = f"Hello {unique()}"
    first, t = g.stored(g.send(make_msg(subject, msgid=new_msgid(), from_=f"Alice <{ALICE}>"),
                               mail_from=ALICE))
    # The acknowledgement and the answer arrive; the answer is the rule's.
    delivered = [parse(r) for r in postfix_relay.wait_messages(ALICE, before + 2)[before:]]
    answers = [d for d in delivered if "Thanks for writing" in d["Subject"]]
    assert len(answers) == 1, [d["Subject"] for d in delivered]
    a = answers[0]
    assert a["Subject"] == f"{t['tag']} Thanks for writing, Alice"
    assert a["Auto-Submitted"] == "auto-replied"
    assert a["In-Reply-To"] == f"<{first['message_id']}>"
    assert a["To"].addresses[0].addr_spec == ALICE
    assert f"yours is {t['tag']}." in a.get_body(("plain",)).get_content()
    assert wait_event(g, t["id"], 1)[0]["action"] == "answer"

    # A second message within the hour: a new ticket, no second answer.
    _, t2 = g.stored(g.send(make_msg(f"Again {unique()}", msgid=new_msgid(),
                                     from_=f"Alice <{ALICE}>"), mail_from=ALICE))
    events = wait_event(g, t2["id"], 1)
    assert (events[0]["notification"], events[0]["reason"]) == (
        "answer:welcome", "already_answered"), events
    # Bob's out-of-office answering the acknowledgement threads onto the
    # ticket, and is never answered.
    ack_id = [d for d in delivered if d not in answers][0]["Message-ID"].strip("<>")
    ooo = make_msg("Out of office", msgid=new_msgid(), from_=f"Bob <{BOB}>",
                   in_reply_to=ack_id, headers=[("Auto-Submitted", "auto-replied")])
    _, t3 = g.stored(g.send(ooo, mail_from=BOB))
    assert t3["id"] == t["id"]
    events = wait_event(g, t["id"], 2)
    assert (events[1]["notification"], events[1]["reason"]) == (
        "answer:welcome", "automatic_mail"), events
    time.sleep(1)
    answered = [parse(r)["Subject"] for r in postfix_relay.maildir_messages(ALICE)[before:]
                + postfix_relay.maildir_messages(BOB)]
    assert sum("Thanks for writing" in s for s in answered) == 1, answered
