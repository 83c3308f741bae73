"""Staff mail through `mailgate serve` over real SMTP: internal mail (From
in `server.internal_domains`) threading as an agent message with nothing
sent to the customer, internal mail that threads nowhere rejected
(`internal_unthreaded`) or opening a ticket for the customer; and the BCC
importer filing staff mail as outbound messages by tag, In-Reply-To, the
ticket-number pattern and the requester, opening a done ticket otherwise,
refusing outsiders, and never queueing anything to send."""
from email.message import EmailMessage
import email.utils

from mailmsg import make_msg, new_msgid, unique

ALICE = "alice@client.test"  # the customer
BOB = "bob@corp.example"  # staff
DESK = "desk@corp.example"  # the support team

CFG = {
    "server": {"internal_domains": ["corp.example"]},
    "mailbox": [
        {"name": "support", "addresses": ["support@example.test"], "queue": "Support",
         "default": True, "team": [DESK]},
        {"name": "sales", "addresses": ["sales@example.test"], "queue": "Sales",
         "internal_unthreaded": "ticket"},
        {"name": "crm", "addresses": ["crm-import@example.test"], "role": "importer",
         "import_into": "support", "ticket_number_pattern": "Ticket #(\\d+)"},
    ],
}


def outbound(g):
    """Every outbox entry, oldest first."""
    return sorted(g.paged("/api/v1/outbound", "outbound", limit=100), key=lambda e: e["id"])


def to(g, address):
    return [e for e in outbound(g) if address in e["rcpt_to"]]


def customer_ticket(g, subject=None):
    msgid = new_msgid()
    m, t = g.stored(g.send(make_msg(subject or f"Printer {unique()}", msgid=msgid,
                                    from_=f"Alice <{ALICE}>"), mail_from=ALICE))
    return msgid, m, t


def staff_msg(subject, to_=ALICE, **kw):
    return make_msg(subject, from_=f"Bob <{BOB}>", to=to_, **kw)


def bcc(g, msg):
    """Sent by Bob to the customer with the importer in BCC."""
    return g.send(msg, mail_from=BOB, rcpts=("crm-import@example.test",))


def test_internal_mail_threads_as_agent_message_and_nothing_goes_to_the_customer(make_gateway):
    g = make_gateway(CFG)
    first_id, _, t = customer_ticket(g)
    assert len(to(g, ALICE)) == 1  # the acknowledgement of her ticket
    # Bob answers on the thread, to support (e.g. "Reply all" from his client).
    reply = staff_msg(f"Re: {t['subject']}", to_="support@example.test", in_reply_to=first_id)
    m, t2 = g.stored(g.send(reply, mail_from=BOB))
    assert t2["id"] == t["id"] and t2["message_count"] == 2, t2
    assert m["direction"] == "internal", m
    assert t2["requester"]["address"] == ALICE, t2  # still the customer's ticket
    # No acknowledgement, no copy to the customer; the team hears of it.
    assert len(to(g, ALICE)) == 1, to(g, ALICE)
    assert len(to(g, DESK)) == 2, to(g, DESK)  # new_ticket, then new_message
    assert not to(g, BOB)


def test_internal_mail_that_threads_nowhere(make_gateway):
    g = make_gateway(CFG)
    before = len(outbound(g))
    # support: internal_unthreaded = "reject" (the default).
    msg = staff_msg(f"Lunch? {unique()}", to_="support@example.test")
    o = g.send(msg, mail_from=BOB).rejection()
    assert o.reason == "internal_unthreaded", o
    assert g.rejection(o.id)["from"] == BOB
    assert g.raw("rejections", o.id).body == msg
    assert not [t for t in g.tickets() if t["requester"]["address"] == BOB]
    # sales: internal_unthreaded = "ticket": a ticket for the customer Bob
    # wrote to (sales in Cc), never acknowledged.
    msg = staff_msg(f"Your order {unique()}", cc="sales@example.test")
    m, t = g.stored(g.send(msg, mail_from=BOB, rcpts=("sales@example.test",)))
    assert t["mailbox"] == "sales" and t["requester"]["address"] == ALICE, t
    assert m["direction"] == "internal", m
    assert not to(g, ALICE), to(g, ALICE)
    events = g.ticket(t["id"])["events"]
    assert {"notification": "acknowledgement", "recipient": ALICE, "reason": "internal_mail"} in [
        {k: e.get(k) for k in ("notification", "recipient", "reason")} for e in events], events
    # The team (support's, the default mailbox's: sales has none) is told.
    assert [e["rcpt_to"] for e in outbound(g)[before:]] == [[DESK]], outbound(g)


def test_the_importer_files_staff_mail_and_sends_nothing(make_gateway):
    g = make_gateway(CFG)
    first_id, _, t = customer_ticket(g)
    other = "carol@client.test"  # not the requester: only the named match can file it
    queued = len(outbound(g))

    by_tag = staff_msg(f"Re: {t['tag']} {t['subject']}", to_=other)
    by_irt = staff_msg("Your printer", to_=other, in_reply_to=first_id)
    by_number = staff_msg(f"About Ticket #{t['number']}", to_=other)
    by_requester = staff_msg(f"Follow-up {unique()}", to_=f"Alice <{ALICE}>")
    for i, msg in enumerate([by_tag, by_irt, by_number, by_requester]):
        m, t2 = g.stored(bcc(g, msg))
        assert t2["id"] == t["id"], (i, t2)
        assert m["direction"] == "outbound" and m["source"] == "bcc_import", m
        assert "delivery" not in m, m  # not in the outbox
        assert g.raw("messages", m["id"]).body == msg
    t = g.ticket(t["id"])
    assert t["message_count"] == 5 and t["status"] == "open", t

    # Nothing matches: a new ticket for the recipient, done; with its attachment.
    att = EmailMessage()
    att["From"] = f"Bob <{BOB}>"
    att["To"] = "Dave <dave@client.test>"
    att["Subject"] = f"Your quote {unique()}"
    att["Message-ID"] = f"<{new_msgid()}>"
    att["Date"] = email.utils.formatdate()
    att.set_content("Quote attached.\n")
    att.add_attachment(b"%PDF-1.4 quote", maintype="application", subtype="pdf",
                       filename="quote.pdf")
    raw = att.as_bytes().replace(b"\n", b"\r\n")
    m, t3 = g.stored(bcc(g, raw))
    assert t3["id"] != t["id"] and t3["status"] == "done", t3
    assert t3["mailbox"] == "support" and t3["queue"] == "Support", t3
    assert t3["requester"]["address"] == "dave@client.test", t3
    assert m["direction"] == "outbound" and m["source"] == "bcc_import", m
    assert [a["name"] for a in m["attachments"]] == ["quote.pdf"], m
    index = m["attachments"][0]["index"]
    r = g.http("GET", f"/api/v1/messages/{m['id']}/attachments/{index}", token=g.token)
    assert r.status == 200 and r.body == b"%PDF-1.4 quote", r
    assert "Quote attached." in m["text"], m

    # The customer's answer to Bob's mail threads onto her ticket.
    answer = make_msg("Re: Follow-up", from_=f"Alice <{ALICE}>",
                      in_reply_to=email.message_from_bytes(by_requester)["Message-ID"].strip("<>"))
    _, t4 = g.stored(g.send(answer, mail_from=ALICE))
    assert t4["id"] == t["id"], t4
    # Nothing the importer filed was queued for sending (the answer above
    # notifies the team: one entry, to DESK).
    new = outbound(g)[queued:]
    assert [e["rcpt_to"] for e in new] == [[DESK]], new


def test_the_importer_refuses_outside_senders(make_gateway):
    g = make_gateway(CFG)
    _, _, t = customer_ticket(g)
    queued = len(outbound(g))
    msg = make_msg(f"Re: {t['tag']} hello", from_="Eve <eve@client.test>")
    o = g.send(msg, mail_from="eve@client.test", rcpts=("crm-import@example.test",)).rejection()
    assert o.reason == "importer_external_sender", o
    assert g.rejection(o.id)["mailbox"] == "crm"
    assert g.ticket(t["id"])["message_count"] == 1
    assert len(outbound(g)) == queued
    assert any(str(r["id"]) == o.id for r in g.rejections(reason="importer_external_sender"))
