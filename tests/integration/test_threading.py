"""Threading (References, In-Reply-To, subject tag) and duplicate detection."""

from mailmsg import make_msg, new_msgid, unique


def _new_ticket(gw):
    mid = new_msgid()
    reply = gw.send(make_msg(f"new issue {unique()}", msgid=mid))
    m, t = gw.stored(reply)
    assert t["message_count"] == 1, "a new message must open a new ticket"
    return mid, t


def test_new_messages_open_separate_tickets(gw):
    _, t1 = _new_ticket(gw)
    _, t2 = _new_ticket(gw)
    assert t1["id"] != t2["id"] and t1["number"] != t2["number"]
    assert t1["tag"] == f"[MG#{t1['number']}]"
    assert t1["number"] >= 1000


def test_thread_by_references(gw):
    mid, t = _new_ticket(gw)
    reply_mid = new_msgid()
    reply = gw.send(make_msg("Re: something", msgid=reply_mid, references=[new_msgid(), mid, new_msgid()]))
    m, t2 = gw.stored(reply)
    assert t2["id"] == t["id"], "References naming a stored Message-ID must thread onto its ticket"
    assert mid in m["references"]
    full = gw.ticket(t["id"])
    assert full["message_count"] == 2
    assert [x["message_id"] for x in full["messages"]] == [mid, reply_mid], "messages oldest first"


def test_thread_by_in_reply_to(gw):
    mid, t = _new_ticket(gw)
    reply = gw.send(make_msg("Re: anything", msgid=new_msgid(), in_reply_to=mid))
    m, t2 = gw.stored(reply)
    assert t2["id"] == t["id"]
    assert m["in_reply_to"] == [mid]


def test_thread_by_reply_chain(gw):
    """A reply to a reply (References lists only the second message) still threads."""
    mid, t = _new_ticket(gw)
    second = new_msgid()
    gw.stored(gw.send(make_msg("Re: 1", msgid=second, in_reply_to=mid)))
    reply = gw.send(make_msg("Re: 2", msgid=new_msgid(), in_reply_to=second, references=[second]))
    _, t3 = gw.stored(reply)
    assert t3["id"] == t["id"] and t3["message_count"] == 3


def test_thread_by_tag_in_subject(gw):
    _, t = _new_ticket(gw)
    reply = gw.send(make_msg(f"Re: {t['tag']} completely different words", msgid=new_msgid()))
    _, t2 = gw.stored(reply)
    assert t2["id"] == t["id"], f"the tag {t['tag']} in the subject must thread onto that ticket"


def test_thread_by_tag_other_sender(gw):
    _, t = _new_ticket(gw)
    reply = gw.send(make_msg(f"FW: {t['tag']}", from_="Bob <bob@elsewhere.test>", msgid=new_msgid()),
                    mail_from="bob@elsewhere.test")
    _, t2 = gw.stored(reply)
    assert t2["id"] == t["id"]


def test_unknown_reference_opens_new_ticket(gw):
    _, t = _new_ticket(gw)
    reply = gw.send(make_msg("Re: unrelated", msgid=new_msgid(), in_reply_to=new_msgid(),
                             references=[new_msgid()]))
    _, t2 = gw.stored(reply)
    assert t2["id"] != t["id"] and t2["message_count"] == 1


def test_threading_is_per_mailbox(gw):
    """A reference to a message of the support mailbox does not thread a message to sales."""
    mid, t = _new_ticket(gw)
    reply = gw.send(make_msg("Re: for sales", to="sales@example.test", msgid=new_msgid(), in_reply_to=mid),
                    rcpts=["sales@example.test"])
    _, t2 = gw.stored(reply)
    assert t2["mailbox"] == "sales"
    assert t2["id"] != t["id"]


# ------------------------------------------------------------ duplicates ---

def test_duplicate_message_id(gw):
    mid = new_msgid()
    msg = make_msg(f"dup {unique()}", msgid=mid)
    first = gw.send(msg).message()
    second = gw.send(msg)
    second.one("duplicate")
    assert first.id not in second.text, f"a duplicate reply must not name the earlier record: {second}"
    t = gw.ticket(gw.message(first.id)["ticket_id"])
    assert t["message_count"] == 1


def test_duplicate_message_id_other_trace_headers(gw):
    """A resend with other Received headers is the same message."""
    mid = new_msgid()
    msg = make_msg("dup a", msgid=mid)
    first = gw.send(msg).message()
    second = gw.send(b"Received: from relay.client.test\r\n" + msg)
    second.one("duplicate")
    assert gw.ticket(gw.message(first.id)["ticket_id"])["message_count"] == 1


def test_planted_message_id_does_not_suppress_the_real_mail(gw):
    """A stranger who sends a Message-ID first must not make the genuine
    message with that id (other sender, other content) vanish."""
    mid = new_msgid()
    before = gw.metrics().get("mailgate_messages_message_id_collision_total", source="smtp",
                              mailbox="support")
    planted = gw.send(make_msg("hello", msgid=mid, from_="stranger@evil.test", body="spam\r\n")).message()
    genuine = make_msg(f"Invoice {unique()}", msgid=mid, from_="ann@customer.test",
                       body="the real mail\r\n")
    real_reply = gw.send(genuine)
    assert "duplicate" not in real_reply.text
    real = real_reply.message()
    assert real.id != planted.id
    m = gw.message(real.id)
    assert m["from"]["address"] == "ann@customer.test" and "the real mail" in m["text"]
    after = gw.metrics().get("mailgate_messages_message_id_collision_total", source="smtp",
                             mailbox="support")
    assert after == before + 1
    # a copy of the genuine message is still a duplicate of it
    gw.send(b"Received: from another.relay.test\r\n" + genuine).one("duplicate")


def test_duplicate_without_message_id_by_content(gw):
    msg = make_msg(f"no message-id {unique()}", msgid=False, date=False)
    first = gw.send(msg).message()
    second = gw.send(msg)
    second.one("duplicate")
    assert gw.ticket(gw.message(first.id)["ticket_id"])["message_count"] == 1


def test_same_message_id_other_mailbox_is_not_duplicate(gw):
    mid = new_msgid()
    msg = make_msg(f"two boxes {unique()}", msgid=mid)
    a = gw.send(msg).message()
    b = gw.send(msg, rcpts=["sales@example.test"])
    ob = b.message()
    assert ob.id != a.id
    assert gw.ticket(gw.message(ob.id)["ticket_id"])["mailbox"] == "sales"


def test_duplicate_of_rejection(gw):
    mid = new_msgid()
    msg = make_msg(f"bulk twice {unique()}", msgid=mid, headers=[("Precedence", "bulk")])
    first = gw.send(msg).rejection()
    count = len(gw.rejections(reason="bulk"))
    second = gw.send(msg)
    second.one("duplicate")
    assert len(gw.rejections(reason="bulk")) == count, f"a second record for {first.id}"


def test_duplicate_counted_in_metrics(gw):
    before = gw.metrics().get("mailgate_messages_duplicate_total", source="smtp", mailbox="support")
    msg = make_msg(f"dup metric {unique()}", msgid=new_msgid())
    gw.send(msg).message()
    gw.send(msg).one("duplicate")
    after = gw.metrics().get("mailgate_messages_duplicate_total", source="smtp", mailbox="support")
    assert after == before + 1


def test_duplicate_to_two_mailboxes(gw):
    msg = make_msg(f"both twice {unique()}", msgid=new_msgid(), to="support@example.test, sales@example.test")
    rcpts = ["support@example.test", "sales@example.test"]
    first = gw.send(msg, rcpts=rcpts)
    assert [o.kind for o in first.outcomes] == ["message", "message"], str(first)
    second = gw.send(msg, rcpts=rcpts)
    assert [o.kind for o in second.outcomes] == ["duplicate", "duplicate"], str(second)
