"""Agent replies through the API: stored on the ticket and queued in one
step, with our Message-ID (reply token), Reply-To and loop headers; the
customer's answer to it threads back even with an edited subject; a forged
token does not. No relay here: the outbox keeps the message (relay tests
deliver through a real Postfix)."""
import base64
import email
import email.policy
import json
import re
import time

from harness import SALES, SUPPORT
from mailmsg import make_msg, new_msgid, unique


def no_ack_gateway(make_gateway):
    """A gateway without acknowledgements: without a relay the first
    message of a ticket (its acknowledgement) would hold the reply queued
    behind it, as the send order per ticket wants."""
    support = dict(SUPPORT, notify={"acknowledgement": {"active": False}})
    return make_gateway({"mailbox": [support, dict(SALES)]})


def post(g, path, body, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return g.http("POST", path, token=g.token, headers=h, body=json.dumps(body).encode())


def new_ticket(g, subject=None):
    m, t = g.stored(g.send(make_msg(subject or f"Printer {unique()}", msgid=new_msgid(),
                                    from_="Ann Customer <ann@customer.test>")))
    return m, t


def wait_for(fn, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_reply_is_stored_queued_and_composed_by_the_header_policy(make_gateway):
    gw = no_ack_gateway(make_gateway)
    first, t = new_ticket(gw)
    r = post(gw, f"/api/v1/tickets/{t['id']}/reply", {"text": "We are on it.\nRegards",
                                                     "html": "<p>We are <b>on it</b></p>"})
    assert r.status == 201, r.body
    body = r.json()
    assert body["queued"] is True
    mid = body["message_id"]
    assert body["delivery"]["state"] in ("queued", "deferred")
    assert body["delivery"]["rcpt_to"] == ["ann@customer.test"]

    ticket = gw.ticket(t["id"])
    assert ticket["message_count"] == 2
    out = [m for m in ticket["messages"] if m["id"] == mid][0]
    assert out["direction"] == "outbound"
    assert out["in_reply_to"] == [first["message_id"]]
    assert out["delivery"]["state"] in ("queued", "deferred")

    raw = gw.raw("messages", mid)
    assert raw.status == 200
    msg = email.message_from_bytes(raw.body, policy=email.policy.default)
    assert msg["From"].addresses[0].addr_spec == "support@example.test"
    assert msg["Reply-To"].addresses[0].addr_spec == "support@example.test"
    assert msg["To"].addresses[0].addr_spec == "ann@customer.test"
    assert msg["Subject"] == f"{t['tag']} Re: {t['subject']}"
    assert msg["In-Reply-To"] == f"<{first['message_id']}>"
    assert first["message_id"] in msg["References"]
    assert re.fullmatch(r"<mg\.\d+\.\d+\.[0-9a-f]{32}@example\.test>", msg["Message-ID"]), msg["Message-ID"]
    assert msg["Auto-Submitted"] is None, "an agent's reply is not automatic"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Mailer"].startswith("mailgate/")
    assert msg["X-Mailgate-Ticket"] == str(t["number"])
    assert msg["X-Mailgate-Message-Id"] == str(mid)
    assert "We are on it." in msg.get_body(("plain",)).get_content()
    assert "<b>on it</b>" in msg.get_body(("html",)).get_content()

    # Without a relay it waits, and says why.
    wait_for(lambda: gw.api(f"/api/v1/outbound/{mid}")["state"] == "deferred", "deferral")
    entry = gw.api(f"/api/v1/outbound/{mid}")
    assert entry["last_error"] == "no relay configured"
    listed = gw.api("/api/v1/outbound", {"state": "deferred"})["outbound"]
    assert mid in [e["id"] for e in listed]
    m = gw.metrics()
    assert m.get("mailgate_outbound_queue_depth", mailbox="support") >= 1
    assert m.get("mailgate_outbound_deferred_total", mailbox="support", reason="no_relay") >= 1


def test_the_customers_answer_threads_back_by_token_and_a_forged_one_does_not(gw):
    _, t = new_ticket(gw)
    r = post(gw, f"/api/v1/tickets/{t['id']}/reply", {"text": "Which model?"})
    assert r.status == 201, r.body
    ours = r.json()["message"]["message_id"]
    # Subject edited, no tag, only our Message-ID in In-Reply-To.
    back = gw.send(make_msg("totally different subject", msgid=new_msgid(), in_reply_to=ours,
                            from_="ann@customer.test"))
    _, t2 = gw.stored(back)
    assert t2["id"] == t["id"]
    # The same token shape with a MAC that does not verify: a new ticket.
    local, domain = ours.split("@")
    parts = local.split(".")
    parts[3] = "0" * 32 if parts[3] != "0" * 32 else "1" * 32
    forged = ".".join(parts) + "@" + domain
    other = gw.send(make_msg("another subject", msgid=new_msgid(), in_reply_to=forged,
                             from_="mallory@evil.test"))
    _, t3 = gw.stored(other)
    assert t3["id"] != t["id"], "a forged token must not thread onto its ticket"
    # And a real token pointing at another ticket id (MAC of ticket A, id B).
    parts = ours.split("@")[0].split(".")
    parts[1] = str(t3["id"])
    wrong = ".".join(parts) + "@" + domain
    third = gw.send(make_msg("x", msgid=new_msgid(), in_reply_to=wrong, from_="mallory@evil.test"))
    _, t4 = gw.stored(third)
    assert t4["id"] not in (t["id"], t3["id"])


def test_internal_note_is_stored_not_sent(gw):
    _, t = new_ticket(gw)
    r = post(gw, f"/api/v1/tickets/{t['id']}/reply",
             {"text": "customer called, wants a call back", "internal": True,
              "author": "agent@example.test"})
    assert r.status == 201, r.body
    assert r.json()["queued"] is False
    mid = r.json()["message_id"]
    note = [m for m in gw.ticket(t["id"])["messages"] if m["id"] == mid][0]
    assert note["direction"] == "note"
    assert note["from"]["address"] == "agent@example.test"
    assert "delivery" not in note
    assert gw.http("GET", f"/api/v1/outbound/{mid}", token=gw.token).status == 404


def test_attachments_and_cc_are_sent(gw):
    _, t = new_ticket(gw)
    data = bytes(range(256)) * 10
    r = post(gw, f"/api/v1/tickets/{t['id']}/reply",
             {"text": "log attached", "cc": ["boss@customer.test"],
              "attachments": [{"name": "log.bin", "content_type": "application/octet-stream",
                               "data": base64.b64encode(data).decode()}]})
    assert r.status == 201, r.body
    mid = r.json()["message_id"]
    assert r.json()["delivery"]["rcpt_to"] == ["ann@customer.test", "boss@customer.test"]
    msg = email.message_from_bytes(gw.raw("messages", mid).body, policy=email.policy.default)
    assert msg["Cc"].addresses[0].addr_spec == "boss@customer.test"
    att = [p for p in msg.iter_attachments()][0]
    assert att.get_filename() == "log.bin" and att.get_content() == data
    a = gw.http("GET", f"/api/v1/messages/{mid}/attachments/0", token=gw.token)
    assert a.status == 200 and a.body == data


def test_hostile_input_cannot_inject_headers(gw):
    _, t = new_ticket(gw, subject="hello")
    r = post(gw, f"/api/v1/tickets/{t['id']}/reply",
             {"text": "x", "cc": ["a@b.test\r\nBcc: victim@evil.test"]})
    assert r.status == 422, r.body
    assert r.json()["error"] == "unprocessable"
    # The requester's name came from a hostile From header; the reply still
    # has one To line and no injected field.
    hostile = make_msg("hi", msgid=new_msgid(),
                       from_="=?utf-8?q?Ann=0D=0ABcc=3A_victim=40evil=2Etest?= <ann2@customer.test>")
    _, t2 = gw.stored(gw.send(hostile))
    r = post(gw, f"/api/v1/tickets/{t2['id']}/reply", {"text": "x"})
    assert r.status == 201, r.body
    raw = gw.raw("messages", r.json()["message_id"]).body
    head = raw.split(b"\r\n\r\n")[0]
    assert b"\r\nBcc:" not in head and not head.startswith(b"Bcc:")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Bcc"] is None
    assert [a.addr_spec for a in msg["To"].addresses] == ["ann2@customer.test"]


def test_bad_requests_get_clear_errors(gw):
    _, t = new_ticket(gw)
    assert post(gw, "/api/v1/tickets/999999/reply", {"text": "x"}).status == 404
    r = post(gw, f"/api/v1/tickets/{t['id']}/reply", {"text": ""})
    assert r.status == 400 and "text or html" in r.json()["message"]
    r = post(gw, f"/api/v1/tickets/{t['id']}/reply", {"txt": "typo"})
    assert r.status == 400
    r = post(gw, f"/api/v1/tickets/{t['id']}/reply",
             {"text": "x", "attachments": [{"name": "a", "data": "%%%"}]})
    assert r.status == 400 and "attachments[0].data" in r.json()["message"]
    # Not JSON: refused before anything is stored (no cross-site form posts).
    r = gw.http("POST", f"/api/v1/tickets/{t['id']}/reply", token=gw.token,
                headers={"Content-Type": "text/plain"}, body=b'{"text": "x"}')
    assert r.status == 415
    assert gw.ticket(t["id"])["message_count"] == 1
    assert gw.http("GET", "/api/v1/outbound?state=nope", token=gw.token).status == 400


def test_retry_queues_a_deferred_message_again_and_refuses_unknown(make_gateway):
    gw = no_ack_gateway(make_gateway)
    _, t = new_ticket(gw)
    mid = post(gw, f"/api/v1/tickets/{t['id']}/reply", {"text": "x"}).json()["message_id"]
    wait_for(lambda: gw.api(f"/api/v1/outbound/{mid}")["state"] == "deferred", "deferral")
    r = post(gw, f"/api/v1/outbound/{mid}/retry", {})
    assert r.status == 200, r.body
    assert r.json()["state"] in ("queued", "deferred")
    assert post(gw, "/api/v1/outbound/999999/retry", {}).status == 404


def test_the_reply_token_key_is_private_and_kept(make_gateway):
    import os
    import stat
    g = make_gateway()
    key = g.workdir / "data" / "reply-token.key"
    assert key.exists()
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    before = key.read_bytes()
    g.restart()
    assert key.read_bytes() == before
    assert before.strip().decode() not in g.log_text()


def test_a_bounce_of_our_reply_threads_onto_its_ticket_and_fails_the_delivery(gw):
    _, t = new_ticket(gw)
    r = post(gw, f"/api/v1/tickets/{t['id']}/reply", {"text": "Here is your answer"})
    ours = r.json()["message"]["message_id"]
    mid = r.json()["message_id"]
    dsn = (
        "From: MAILER-DAEMON@relay.client.test (Mail Delivery System)\r\n"
        "To: support@example.test\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{new_msgid()}>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"BB\"\r\n\r\n"
        "--BB\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--BB\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; relay.client.test\r\n\r\n"
        "Final-Recipient: rfc822; ann@customer.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <ann@customer.test>: Recipient address rejected\r\n"
        "--BB\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: support@example.test\r\nTo: ann@customer.test\r\nMessage-ID: <{ours}>\r\n"
        f"Subject: {t['tag']} Re: x\r\n"
        "--BB--\r\n").encode()
    reply = gw.send(dsn, mail_from="")
    m, t2 = gw.stored(reply)
    assert t2["id"] == t["id"], "the bounce threads onto the ticket of the message it returns"
    assert m["auto_submitted"] is True
    e = gw.api(f"/api/v1/outbound/{mid}")
    assert e["state"] == "failed"
    assert e["last_error"] == "bounced: smtp; 550 5.1.1 <ann@customer.test>: Recipient address rejected"
