"""PATCH /api/v1/tickets/{id}: status, assignee, categories; every change
recorded as an event on the ticket (who, what, when); categories from the
config with labels per language; the list filters by category."""
import json

from mailmsg import make_msg, new_msgid, unique

CATEGORIES = [
    {"key": "billing", "labels": {"en": "Billing", "de": "Abrechnung", "fr": "Facturation"}},
    {"key": "hardware", "labels": {"en": "Hardware", "de": "Hardware"}},
]


def patch(g, tid, body, content_type="application/json"):
    return g.http("PATCH", f"/api/v1/tickets/{tid}", token=g.token,
                  headers={"Content-Type": content_type}, body=json.dumps(body).encode())


def changes(t):
    """The ticket's change events, without notification suppressions (no
    team is configured here, so new_ticket has no recipient)."""
    return [e for e in t["events"] if e["change"] != "notification_suppressed"]


def new_ticket(g):
    _, t = g.stored(g.send(make_msg(f"Q {unique()}", msgid=new_msgid())))
    return t


def test_changes_are_applied_and_recorded(make_gateway):
    g = make_gateway({"category": CATEGORIES})
    t = new_ticket(g)
    r = patch(g, t["id"], {"status": "pending", "assignee": "Bob@Example.test",
                           "categories": ["hardware"], "by": "lead@example.test"})
    assert r.status == 200, r.body
    body = r.json()
    assert body["ticket"]["status"] == "pending"
    assert body["ticket"]["assignee"] == "bob@example.test"
    assert body["ticket"]["categories"] == ["hardware"]
    assert [e["change"] for e in body["events"]] == ["status", "assignee", "categories"]
    got = g.ticket(t["id"])
    assert got["status"] == "pending" and got["assignee"] == "bob@example.test"
    ev = changes(got)
    assert ev[0] == {"at": ev[0]["at"], "by": "lead@example.test", "change": "status",
                     "from": "open", "to": "pending"}
    assert ev[1]["from"] is None and ev[1]["to"] == "bob@example.test"
    assert ev[2]["added"] == ["hardware"] and ev[2]["removed"] == []
    # nothing changes: no new event
    assert patch(g, t["id"], {"status": "pending"}).json()["events"] == []
    # clear the assignee
    r = patch(g, t["id"], {"assignee": None, "status": "done"})
    assert r.json()["ticket"]["assignee"] is None
    assert len(changes(g.ticket(t["id"]))) == 5
    # filters
    other = new_ticket(g)
    patch(g, other["id"], {"categories": ["billing"]})
    ids = [x["id"] for x in g.tickets(category="hardware")]
    assert t["id"] in ids and other["id"] not in ids
    assert [x["id"] for x in g.tickets(category="billing")] == [other["id"]]
    assert [x["id"] for x in g.tickets(status="done")] == [t["id"]]
    # survives a restart
    g.restart()
    assert len(changes(g.ticket(t["id"]))) == 5


def test_categories_with_labels_per_language(make_gateway):
    g = make_gateway({"category": CATEGORIES})
    de = g.api("/api/v1/categories", {"lang": "de"})["categories"]
    assert [(c["key"], c["label"]) for c in de] == [("billing", "Abrechnung"), ("hardware", "Hardware")]
    fr = g.api("/api/v1/categories", {"lang": "fr"})["categories"]
    assert [c["label"] for c in fr] == ["Facturation", "Hardware"]  # English when no French label
    assert g.api("/api/v1/categories")["categories"][0]["label"] == "Billing"


def test_bad_changes_are_refused_and_change_nothing(make_gateway):
    g = make_gateway({"category": CATEGORIES})
    t = new_ticket(g)
    for body, code, words in [
        ({"status": "closed"}, 400, "unknown status"),
        ({"categories": ["nope"]}, 422, "unknown category"),
        ({"assignee": "not an address"}, 422, "assignee"),
        ({"assignee": 5}, 400, "assignee"),
        ({"colour": "red"}, 400, "unknown field"),
    ]:
        r = patch(g, t["id"], body)
        assert r.status == code, (body, r.status, r.body)
        assert words in r.json()["message"], r.body
    assert patch(g, 999999, {"status": "done"}).status == 404
    assert patch(g, t["id"], {"status": "done"}, content_type="text/plain").status == 415
    got = g.ticket(t["id"])
    assert got["status"] == "open" and changes(got) == []


def test_check_config_names_bad_category_keys(make_gateway):
    from dovecot import run_command
    g = make_gateway({"category": [{"key": "Bad Key"}, {"key": "ok"}, {"key": "ok"}]}, start=False)
    r = run_command(g, "check-config")
    assert r.returncode == 2
    out = r.stdout + r.stderr
    assert "category[0].key" in out and "category[2].key: duplicate" in out, out
