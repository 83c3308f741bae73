"""HTTP: health, JSON API paging/filters/errors, bearer token, metrics."""

import time

import pytest

from mailmsg import make_msg, new_msgid, unique


def test_healthz(gw):
    r = gw.http("GET", "/healthz")
    assert r.status == 200
    assert r.json() == {"status": "ok"}


@pytest.mark.parametrize("path", [
    "/api/v1/tickets/987654321",
    "/api/v1/messages/987654321",
    "/api/v1/rejections/987654321",
    "/api/v1/rejections/987654321/raw",
    "/api/v1/messages/987654321/raw",
    "/api/v1/nothing-here",
    "/api/v2/tickets",
    "/no/such/path",
])
def test_not_found_json(gw, path):
    r = gw.http("GET", path)
    assert r.status == 404, f"{path}: {r}"
    body = r.json()
    assert body.get("error") == "not_found" and isinstance(body.get("message"), str), body


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "limit=-1", "cursor=not-a-cursor"])
def test_bad_parameters_400(gw, query):
    r = gw.http("GET", f"/api/v1/tickets?{query}")
    assert r.status == 400, f"?{query}: {r}"
    body = r.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body


def test_bad_rejection_parameters_400(gw):
    for q in ("limit=0", "limit=x", "cursor=garbage!"):
        r = gw.http("GET", f"/api/v1/rejections?{q}")
        assert r.status == 400, f"?{q}: {r}"


def test_non_numeric_id(gw):
    r = gw.http("GET", "/api/v1/tickets/abc")
    assert r.status in (400, 404), r
    assert isinstance(r.json().get("error"), str)


def test_json_content_type(gw):
    r = gw.http("GET", "/api/v1/tickets?limit=1")
    assert r.status == 200
    assert r.headers.get("Content-Type", "").startswith("application/json")


# ------------------------------------------------------------- paging ---

@pytest.fixture
def gw55(make_gateway):
    """A fresh gateway with 55 tickets (50 support, 5 sales) and 3 rejections."""
    g = make_gateway()
    with g.smtp() as s:
        for i in range(50):
            g.send(make_msg(f"support ticket {i}", msgid=new_msgid()), smtp=s).message()
            s.rset()
        for i in range(5):
            g.send(make_msg(f"sales ticket {i}", to="sales@example.test", msgid=new_msgid()),
                   rcpts=["sales@example.test"], smtp=s).message()
            s.rset()
        for i in range(3):
            g.send(make_msg(f"bulk {i}", headers=[("Precedence", "bulk")]), smtp=s).rejection()
            s.rset()
        g.send(make_msg("auto", headers=[("Auto-Submitted", "auto-generated")]), smtp=s).rejection()
    return g


def test_ticket_paging(gw55):
    first = gw55.api("/api/v1/tickets")
    assert len(first["tickets"]) == 50, "default limit is 50"
    assert first["next"], "a next cursor when more tickets exist"

    seen = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = gw55.api("/api/v1/tickets", params)
        assert len(page["tickets"]) <= 7
        seen.extend(page["tickets"])
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
        assert pages < 20, "paging does not end"
    assert pages == 8  # 55 = 7*7 + 6
    ids = [t["id"] for t in seen]
    assert len(ids) == 55 and len(set(ids)) == 55, "every ticket exactly once over the pages"
    created = [t["created_at"] for t in seen]
    numbers = [t["number"] for t in seen]
    assert numbers == sorted(numbers, reverse=True), "newest first"
    assert created == sorted(created, reverse=True)
    assert sorted(numbers) == list(range(1000, 1055)), "numbers start at first_number, one per ticket"

    everything = gw55.api("/api/v1/tickets", {"limit": 500})
    assert len(everything["tickets"]) == 55 and everything["next"] is None


def test_ticket_filters(gw55):
    sales = gw55.tickets(mailbox="sales")
    assert len(sales) == 5 and all(t["mailbox"] == "sales" and t["queue"] == "Sales" for t in sales)
    support = gw55.tickets(mailbox="support")
    assert len(support) == 50
    assert len(gw55.tickets(status="open")) == 55
    assert gw55.tickets(status="closed") == []
    assert len(gw55.tickets(mailbox="sales", status="open")) == 5
    page = gw55.api("/api/v1/tickets", {"mailbox": "sales", "limit": 2})
    assert len(page["tickets"]) == 2 and page["next"]
    page2 = gw55.api("/api/v1/tickets", {"mailbox": "sales", "limit": 2, "cursor": page["next"]})
    assert all(t["mailbox"] == "sales" for t in page2["tickets"])
    assert not {t["id"] for t in page["tickets"]} & {t["id"] for t in page2["tickets"]}


def test_rejection_paging_and_filter(gw55):
    allr = gw55.rejections()
    assert len(allr) == 4
    page = gw55.api("/api/v1/rejections", {"limit": 3})
    assert len(page["rejections"]) == 3 and page["next"]
    rest = gw55.api("/api/v1/rejections", {"limit": 3, "cursor": page["next"]})
    assert len(rest["rejections"]) == 1 and rest["next"] is None
    ids = [r["id"] for r in page["rejections"] + rest["rejections"]]
    assert len(set(ids)) == 4
    received = [r["received_at"] for r in page["rejections"] + rest["rejections"]]
    assert received == sorted(received, reverse=True), "newest first"
    bulk = gw55.rejections(reason="bulk")
    assert len(bulk) == 3 and all(r["reason"] == "bulk" for r in bulk)
    assert len(gw55.rejections(reason="auto_submitted")) == 1
    assert gw55.rejections(reason="loop") == []


def test_limit_max_500(make_gateway):
    g = make_gateway()
    r = g.http("GET", "/api/v1/tickets?limit=500")
    assert r.status == 200 and r.json() == {"tickets": [], "next": None}
    r = g.http("GET", "/api/v1/rejections?limit=500")
    assert r.status == 200 and r.json() == {"rejections": [], "next": None}


# --------------------------------------------------------------- token ---

def test_bearer_token_enforced(make_gateway):
    token = "s3cr3t-" + unique()
    g = make_gateway(env={"MAILGATE_TEST_TOKEN": token})
    for path in ("/api/v1/tickets", "/api/v1/rejections", "/api/v1/tickets/1", "/api/v1/nothing"):
        r = g.http("GET", path)
        assert r.status == 401, f"{path} without a token: {r}"
        assert isinstance(r.json().get("error"), str)
        r = g.http("GET", path, token="wrong")
        assert r.status == 401, f"{path} with a wrong token: {r}"
        r = g.http("GET", path, headers={"Authorization": token})
        assert r.status == 401, f"{path} with the token but no Bearer scheme: {r}"
    r = g.http("GET", "/api/v1/tickets", token=token)
    assert r.status == 200, r
    r = g.http("GET", "/api/v1/tickets", headers={"Authorization": f"bearer {token}"})
    assert r.status == 200, f"the scheme is case-insensitive (RFC 9110): {r}"
    assert g.http("GET", "/healthz").status == 200, "/healthz stays open"
    assert g.http("GET", "/metrics").status == 200, "/metrics stays open"
    # with the token, the API works end to end
    g.token = token
    m, _ = g.stored(g.send(make_msg("with token")))
    assert g.raw("messages", m["id"]).status == 200
    assert token not in g.log_text(), "the API token must never be logged"


def test_empty_token_env_leaves_api_open(make_gateway):
    g = make_gateway(env={"MAILGATE_TEST_TOKEN": ""})
    assert g.http("GET", "/api/v1/tickets").status == 200


def test_no_token_env_leaves_api_open(gw):
    assert gw.http("GET", "/api/v1/tickets?limit=1").status == 200


# ------------------------------------------------------------- metrics ---

def test_metrics_count(make_gateway):
    g = make_gateway()
    mid = new_msgid()
    g.send(make_msg("first", msgid=mid)).message()
    g.send(make_msg("Re: first", msgid=new_msgid(), in_reply_to=mid)).message()
    g.send(make_msg("to sales", msgid=new_msgid()), rcpts=["sales@example.test"]).message()
    m = g.metrics()
    assert m.get("mailgate_messages_received_total", source="smtp", mailbox="support") == 2
    assert m.get("mailgate_messages_received_total", source="smtp", mailbox="sales") == 1
    assert m.get("mailgate_tickets_created_total", mailbox="support") == 1
    assert m.get("mailgate_tickets_created_total", mailbox="sales") == 1

    dup = make_msg("dup", msgid=new_msgid())
    g.send(dup).message()
    g.send(dup).one("duplicate")
    g.send(make_msg("bulk", headers=[("Precedence", "bulk")])).rejection()
    g.send(make_msg("bulk2", headers=[("Precedence", "junk")])).rejection()
    g.send(make_msg("loop", from_="support@example.test")).rejection()
    m = g.metrics()
    assert m.get("mailgate_messages_duplicate_total", source="smtp", mailbox="support") == 1
    assert m.get("mailgate_messages_rejected_total", source="smtp", reason="bulk") == 2
    assert m.get("mailgate_messages_rejected_total", source="smtp", reason="loop") == 1

    count = m.get("mailgate_store_commit_seconds_count")
    assert count >= 6, f"store commits counted: {count}"
    assert m.get("mailgate_store_commit_seconds_bucket", le="+Inf") == count
    assert m.has("mailgate_store_commit_seconds_sum")
    assert m.types.get("mailgate_store_commit_seconds") == "histogram"


def _gauge_settles(g, value, timeout=20):
    """The sessions gauge, once it reaches `value` (or the last reading at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        v = g.metrics().get("mailgate_smtp_sessions_active")
        if v == value or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


def test_metrics_sessions_active(make_gateway):
    g = make_gateway()
    assert g.metrics().has("mailgate_smtp_sessions_active")
    with g.raw_smtp() as r1, g.raw_smtp() as r2:
        r1.expect("EHLO a.test", 250)
        r2.expect("EHLO b.test", 250)
        assert _gauge_settles(g, 2) == 2
        r1.expect("QUIT", 221)
        assert r1.closed_by_server()
        assert _gauge_settles(g, 1) == 1
        r2.expect("QUIT", 221)
        assert r2.closed_by_server()
    assert _gauge_settles(g, 0) == 0


def test_metrics_oversize_counted(make_gateway):
    g = make_gateway({"limits": {"max_message_size": 20000}})
    with g.smtp() as s:
        s.mail("a@client.test")
        s.rcpt("support@example.test")
        code, _ = s.data(make_msg("big", body="y" * 30000))
        assert code == 552
    assert g.metrics().get("mailgate_messages_rejected_total", source="smtp", reason="oversize") == 1


def test_metrics_text_format(gw):
    dup = make_msg(f"fmt {unique()}", msgid=new_msgid())
    gw.send(dup).message()
    gw.send(dup).one("duplicate")
    gw.send(make_msg(f"fmt {unique()}", headers=[("Precedence", "bulk")])).rejection()
    r = gw.http("GET", "/metrics")
    assert r.status == 200
    assert r.headers.get("Content-Type") == "text/plain; version=0.0.4; charset=utf-8", \
        "the classic format unless OpenMetrics is asked for (test_metrics_format.py)"
    text = r.body.decode()
    for name in ("mailgate_messages_received_total", "mailgate_messages_rejected_total",
                 "mailgate_messages_duplicate_total", "mailgate_tickets_created_total",
                 "mailgate_smtp_sessions_active", "mailgate_store_commit_seconds"):
        assert name in text, f"{name} missing from /metrics"
