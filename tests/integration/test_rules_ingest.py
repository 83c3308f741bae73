"""Mail rules on incoming mail through `mailgate serve`: settings on the
ticket a message opens or joins (with history entries by the rules),
rejection by rule, linking by a ticket-number pattern, `stop`, and mail no
rule matches left as it was."""

from mailmsg import make_msg, unique

RULES = {
    "server": {"internal_domains": ["corp.example"]},
    "category": [{"key": "invoice"}, {"key": "vendor"}],
    "rule": [
        {"name": "spam", "when": [{"field": "header", "name": "X-Spam-Flag", "equals": "YES"}],
         "reject": True},
        {"name": "vendors", "when": [{"field": "from", "ends_with": "@vendor.example"}],
         "categories": ["vendor"]},
    ],
    "mailbox": [
        {"name": "support", "addresses": ["support@example.test"], "queue": "Support",
         "default": True,
         "rule": [
             {"name": "invoices", "when": [{"field": "subject", "regex": "(?i)\\binvoice\\b"}],
              "queue": "Billing", "categories": ["invoice"], "status": "pending",
              "assignee": "ann@corp.example", "stop": True},
             {"name": "after stop", "when": [], "status": "done"},
         ]},
        {"name": "sales", "addresses": ["sales@example.test"], "queue": "Sales",
         "rule": [{"name": "link", "when": [], "link": "Case (\\d+)"}]},
    ],
}


def test_rules_set_fields_reject_and_stop(make_gateway):
    g = make_gateway(RULES)
    # Global "vendors" then the mailbox's "invoices" (which stops).
    reply = g.send(make_msg(f"Invoice 4711 {unique()}", from_="Ann <ann@vendor.example>"),
                   mail_from="ann@vendor.example")
    m, t = g.stored(reply)
    assert t["queue"] == "Billing", t
    assert t["status"] == "pending", t
    assert t["assignee"] == "ann@corp.example", t
    assert sorted(t["categories"]) == ["invoice", "vendor"], t
    events = g.api(f"/api/v1/tickets/{t['id']}")["events"]
    changes = {e["change"]: e for e in events}
    assert changes["status"]["by"] == "mail rules" and changes["status"]["to"] == "pending", events
    assert changes["assignee"]["to"] == "ann@corp.example", events
    # A message no rule matches: the mailbox's defaults, nothing recorded,
    # except the catch-all "after stop" rule, which runs for it.
    reply = g.send(make_msg(f"Hello {unique()}"))
    _, t2 = g.stored(reply)
    assert t2["queue"] == "Support" and t2["categories"] == [], t2
    assert t2["status"] == "done", t2
    # Rejected by a rule: reason "rule", the rule named in the detail, raw kept.
    msg = make_msg(f"Cheap {unique()}", headers=[("X-Spam-Flag", "YES")])
    o = g.send(msg).rejection()
    assert o.reason == "rule", o
    rec = g.rejection(o.id)
    assert rec["detail"] == "rule:spam", rec
    assert g.raw("rejections", o.id).body == msg
    assert any(str(r["id"]) == o.id for r in g.rejections(reason="rule"))


def test_a_ticket_number_pattern_links_a_message_to_its_ticket(make_gateway):
    g = make_gateway(RULES)
    first = g.send(make_msg(f"Order question {unique()}"), rcpts=("sales@example.test",))
    _, t = g.stored(first)
    # No tag, no In-Reply-To: only "Case <number>" in the body links it.
    body = f"About Case {t['number']}, any news?\r\n"
    reply = g.send(make_msg(f"Following up {unique()}", body=body),
                   rcpts=("sales@example.test",))
    m, t2 = g.stored(reply)
    assert t2["id"] == t["id"], (t, t2)
    assert t2["message_count"] == 2, t2
    # A number of a ticket that does not exist opens a new ticket.
    reply = g.send(make_msg(f"Case 999999 {unique()}"), rcpts=("sales@example.test",))
    _, t3 = g.stored(reply)
    assert t3["id"] != t["id"]
    # The pattern is the sales mailbox's: support mail is not linked.
    reply = g.send(make_msg(f"Case {t['number']} {unique()}"))
    _, t4 = g.stored(reply)
    assert t4["mailbox"] == "support" and t4["id"] != t["id"]
