"""Quarantine and replay through `mailgate serve`: a message rejected by a
rule is replayed after the rule is removed (restart with the new config)
and becomes a ticket message; the rejection records the link, a second
replay answers the same result and stores nothing; `{"as": "ticket"}`
lets an auto-submitted message through; an oversize rejection has nothing
to replay (409); the decision trace is served with every record; the API's
token and same-origin rules hold for the replay POST; old rejections are
pruned with their raw bytes."""

import copy
import json

from harness import TOKEN_ENV, to_toml
from mailmsg import make_msg, new_msgid, unique

TOKEN = "replay-test-token"

SPAM_RULE = {"name": "spam", "when": [{"field": "header", "name": "X-Spam-Flag", "equals": "YES"}],
             "reject": True}


def replay(g, rid, body=None, token=TOKEN, content_type="application/json"):
    headers = {"Content-Type": content_type} if content_type else {}
    data = b"" if body is None else json.dumps(body).encode()
    return g.http("POST", f"/api/v1/rejections/{rid}/replay", token=token, headers=headers,
                  body=data)


def gateway(make_gateway, overrides):
    return make_gateway(overrides, env={TOKEN_ENV: TOKEN}, token=TOKEN)


def test_replay_after_the_rule_is_removed_makes_one_ticket_message(make_gateway):
    g = gateway(make_gateway, {"rule": [SPAM_RULE]})
    msgid = new_msgid()
    subject = f"Not spam {unique()}"
    msg = make_msg(subject, msgid=msgid, headers=[("X-Spam-Flag", "YES")])
    o = g.send(msg).rejection()
    rec = g.rejection(o.id)
    assert rec["reason"] == "rule" and rec["detail"] == "rule:spam", rec
    # The trace: how it was routed, the rules evaluated, the dedup key.
    trace = rec["trace"]
    assert trace["routing"] == {"address": "support@example.test", "mailbox": "support",
                                "default_used": False}, trace
    assert trace["rules"] == [{"rule": "spam", "scope": "global", "matched": True}], trace
    assert trace["classification"]["automatic"] is None, trace
    assert trace["dedup"]["key"] == f"id:{msgid.strip('<>')}", trace
    assert trace["dedup"]["outcome"] == "new", trace

    # The admin removes the rule; the gateway restarts with the new config.
    g.stop()
    g.config = copy.deepcopy(g.config)
    del g.config["rule"]
    g.config_path.write_text(to_toml(g.config))
    g.start()

    r = replay(g, o.id)
    assert r.status == 201, r
    first = r.json()
    assert first["first"] is True, first
    outcome = first["replayed"]["outcome"]
    assert outcome["kind"] == "message", outcome
    m = g.message(outcome["message_id"])
    assert m["ticket_id"] == outcome["ticket_id"] and m["subject"] == subject, m
    assert m["trace"]["replay_of"] == int(o.id), m["trace"]
    assert m["trace"]["threading"]["by"] == "new_ticket", m["trace"]
    assert m["trace"]["dedup"]["outcome"] == "replayed", m["trace"]
    assert m["trace"]["rules"] == [], m["trace"]
    # The rejection shows the link.
    assert g.rejection(o.id)["replayed"] == first["replayed"]

    # Again: the same answer, nothing new stored.
    counts = g.store_counts()
    r = replay(g, o.id)
    assert r.status == 200, r
    assert r.json()["replayed"] == first["replayed"] and r.json()["first"] is False, r.json()
    assert g.store_counts() == counts
    assert g.ticket(outcome["ticket_id"])["message_count"] == 1
    # The same mail sent again is a duplicate of the replayed message.
    assert g.send(msg).one("duplicate")


def test_as_ticket_lets_an_auto_submitted_message_through(make_gateway):
    g = gateway(make_gateway, {})
    o = g.send(make_msg(f"Out of office {unique()}",
                        headers=[("Auto-Submitted", "auto-replied")])).rejection()
    rec = g.rejection(o.id)
    assert rec["reason"] == "auto_submitted", rec
    cls = rec["trace"]["classification"]
    assert cls["automatic"]["reason"] == "auto_submitted", cls
    assert "Auto-Submitted: auto-replied" in cls["signals"], cls
    # Without the override the current pipeline still refuses it: a new rejection.
    o2 = g.send(make_msg(f"Out of office {unique()}",
                         headers=[("Auto-Submitted", "auto-replied")])).rejection()
    r = replay(g, o2.id)
    assert r.status == 201, r
    again = r.json()["replayed"]["outcome"]
    assert again["kind"] == "rejection" and again["reason"] == "auto_submitted", again
    assert g.rejection(again["rejection_id"])["trace"]["replay_of"] == int(o2.id)
    # With it: a ticket message, the classification marked as set aside.
    r = replay(g, o.id, {"as": "ticket"})
    assert r.status == 201, r
    replayed = r.json()["replayed"]
    assert replayed["as_ticket"] is True and replayed["outcome"]["kind"] == "message", replayed
    m = g.message(replayed["outcome"]["message_id"])
    assert m["trace"]["classification"]["overridden"] is True, m["trace"]
    assert m["trace"]["classification"]["automatic"]["reason"] == "auto_submitted"
    # A body that is not the documented one is refused.
    assert replay(g, o2.id, {"as": "robot"}).status == 400


def test_oversize_has_nothing_to_replay_and_the_post_is_protected(make_gateway):
    g = gateway(make_gateway, {"limits": {"max_message_size": 20000}})
    with g.smtp() as s:
        s.mail("a@client.test")
        s.rcpt("support@example.test")
        code, _ = s.data(make_msg(f"big {unique()}", body="y" * 30000))
        assert code == 552
    (rec,) = g.rejections(reason="oversize")
    assert rec["raw_available"] is False
    r = replay(g, rec["id"])
    assert r.status == 409, r
    assert "no raw message" in r.json()["message"], r.json()
    assert replay(g, 999999).status == 404
    # The API's rules: a token, and JSON (a cross-site form cannot send it).
    o = g.send(make_msg(f"bulk {unique()}", headers=[("Precedence", "bulk")])).rejection()
    assert replay(g, o.id, token=None).status == 401
    assert replay(g, o.id, token="wrong").status == 401
    assert replay(g, o.id, content_type="text/plain").status in (403, 415)
    assert "replayed" not in g.rejection(o.id)


def test_the_quarantine_lists_by_reason_and_since(make_gateway):
    g = gateway(make_gateway, {})
    bulk = g.send(make_msg(f"bulk {unique()}", headers=[("Precedence", "bulk")])).rejection()
    auto = g.send(make_msg(f"auto {unique()}",
                           headers=[("Auto-Submitted", "auto-replied")])).rejection()
    received = g.rejection(bulk.id)["received_at"]
    ids = lambda **p: [str(r["id"]) for r in g.rejections(**p)]  # noqa: E731
    assert ids(since=received) == [auto.id, bulk.id]
    assert ids(since=received, reason="bulk") == [bulk.id]
    assert ids(since="2999-01-01T00:00:00Z") == []
    assert ids(since="2000-01-01T00:00:00+02:00", reason="auto_submitted") == [auto.id]
    r = g.http("GET", "/api/v1/rejections?since=yesterday", token=TOKEN)
    assert r.status == 400 and "RFC 3339" in r.json()["message"], r


def test_old_rejections_are_pruned_with_their_raw_bytes(make_gateway):
    import time
    g = gateway(make_gateway, {"tickets": {"rejection_retention": "1s"}})
    o = g.send(make_msg(f"bulk {unique()}", headers=[("Precedence", "bulk")])).rejection()
    # Waits for the periodic task (every second here); no timing asserted.
    deadline = time.monotonic() + 60
    while g.http("GET", f"/api/v1/rejections/{o.id}", token=TOKEN).status == 200:
        assert time.monotonic() < deadline, "the rejection was never pruned"
        time.sleep(0.2)
    assert g.http("GET", f"/api/v1/rejections/{o.id}", token=TOKEN).status == 404
    assert g.raw("rejections", o.id).status == 404
    assert g.rejections() == [] and g.rejections(reason="bulk") == []
    assert g.metrics().get("mailgate_rejections_pruned_total") == 1
    assert replay(g, o.id).status == 404
