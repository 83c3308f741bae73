"""End to end through `mailgate serve`: a `protocol = "graph"` mailbox reads
the fake Microsoft Graph (fakes/graph.py) with access tokens from the fake
authorization server (fakes/oauth_server.py, Microsoft flavour). The Graph
fake takes exactly the tokens the authorization server issued (it asks it),
so a token the gateway invented or kept too long is refused as Graph would.

Covered: unread messages imported once, paging over @odata.nextLink,
categories by outcome, a token refused mid-sync (one refresh, the sync goes
on), 429 + Retry-After (throttled, then imported), SIGKILL between the
commit and the mark (no duplicate, marked after the restart), and no token
or secret in the debug log, the API or the redb file."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import ssl
import stat

import pytest

from dovecot import mailbox, message_count, wait_until
from fakes.graph import FakeGraph
from fakes.oauth_server import OAuthFake
from harness import SALES, SUPPORT
from imapbase import _certificates

CLIENT_ID = "3f0b6c1e-2d4a-4c55-8e7f-graph-e2e-client"
CLIENT_SECRET = "cs~G8~graph-upstream-client-secret-value"
SEED = "rt-seed-graph-upstream-initial-refresh-token"
USER = "support@contoso.test"


def private_file(path, text):
    path.write_text(text)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return str(path)


class Graph:
    """The Graph fake plus its control API over HTTPS."""

    def __init__(self, certs, oauth: OAuthFake):
        self.oauth = oauth
        self.ca = oauth.ca
        self.fake = FakeGraph(certs["cert.pem"], certs["key.pem"],
                              resolver=lambda t: t in oauth.state()["issued_access_tokens"])

    def control(self, method, path, obj=None):
        ctx = ssl.create_default_context(cafile=str(self.ca))
        conn = http.client.HTTPSConnection("localhost", self.fake.port, context=ctx, timeout=30)
        try:
            body = json.dumps(obj).encode() if obj is not None else None
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            assert r.status == 200, (r.status, data)
            return json.loads(data) if data else {}
        finally:
            conn.close()

    def add(self, raw: bytes, folder="inbox"):
        return self.control("POST", "/_fake/messages", {
            "user": USER, "folder": folder, "mime_b64": base64.b64encode(raw).decode()})["id"]

    def inject(self, **inj):
        self.control("POST", "/_fake/inject", inj)

    def state(self):
        return self.control("GET", "/_fake/state")

    def messages(self):
        return {m["id"]: m for m in self.state()["users"][USER]["messages"]}

    def requests(self, method=None):
        return [r for r in self.state()["requests"] if method is None or r["method"] == method]


@pytest.fixture
def peers(tmp_path):
    certs = _certificates()
    oauth = OAuthFake(tmp_path / "oauth-fake", certs, flavor="microsoft", client_id=CLIENT_ID,
                      client_secret=CLIENT_SECRET, refresh_tokens=[SEED])
    graph = Graph(certs, oauth)
    yield oauth, graph
    graph.fake.stop()
    oauth.stop()


def start(make_gateway, peers, tmp_path, **upstream_over):
    oauth, graph = peers
    support = dict(SUPPORT)
    support["upstream"] = {"protocol": "graph", "user": USER, "folder": "inbox",
                           "api_base": graph.fake.base, "ca_file": str(oauth.ca),
                           "poll_interval": "1h", "idle": False, **upstream_over}
    support["oauth2"] = {
        "provider": "microsoft", "client_id": CLIENT_ID, "tenant": "contoso",
        "token_url": oauth.token_url(), "authorize_url": oauth.authorize_url(),
        "client_secret_file": private_file(tmp_path / "client-secret", CLIENT_SECRET),
        "refresh_token_file": private_file(tmp_path / "refresh-token", SEED),
        "ca_file": str(oauth.ca),
    }
    return make_gateway({"mailbox": [support, dict(SALES)]}, env={"MAILGATE_LOG": "debug"})


def mail(n: int, extra: str = "") -> bytes:
    return (f"From: Customer {n} <c{n}@example.org>\r\nTo: support@example.test\r\n"
            f"Subject: graph {n}\r\nMessage-ID: <graph{n}@example.org>\r\n{extra}\r\n"
            f"body {n}\r\n").encode()


def auto_reply(n: int) -> bytes:
    return mail(n, "Auto-Submitted: auto-replied\r\n")


def subjects(g) -> list[str]:
    return sorted(t["subject"] for t in g.tickets())


def sync(g):
    return g.http_json("POST", "/api/v1/mailboxes/support/sync", {})


def assert_no_secrets(g, oauth, *texts):
    s = oauth.state()
    secrets = [CLIENT_SECRET, SEED, *s["issued_access_tokens"], *s["issued_refresh_tokens"]]
    assert len(s["issued_access_tokens"]) >= 1
    db = (g.workdir / "data" / "mailgate.redb").read_bytes()
    logs = "".join(g.log_text(i) for i in range(1, g.starts + 1))
    assert "DEBUG" in logs or "debug" in logs, "the debug log is read"
    for secret in secrets:
        assert secret.encode() not in db, "a token is in the database file in clear"
        assert secret not in logs, "a token is in the log"
        for t in texts:
            assert secret not in t, "a token is in an API answer"


def test_import_once_paging_categories_and_a_refresh_mid_sync(make_gateway, peers, tmp_path):
    oauth, graph = peers
    graph.control("POST", "/_fake/config", {"max_page": 2})
    ids = [graph.add(mail(n)) for n in range(1, 5)]
    rejected = graph.add(auto_reply(5))
    already_read = graph.control("POST", "/_fake/messages", {
        "user": USER, "mime_b64": base64.b64encode(mail(6)).decode(), "isRead": True})["id"]
    g = start(make_gateway, peers, tmp_path)
    wait_until(lambda: message_count(g) == 4 and len(g.rejections()) == 1, 30,
               "four tickets and one rejection", g=g)
    wait_until(lambda: all(graph.messages()[i]["isRead"] for i in ids + [rejected]), 30,
               "all marked read", g=g)
    assert subjects(g) == [f"graph {n}" for n in range(1, 5)]
    msgs = graph.messages()
    for i in ids:
        assert msgs[i]["categories"] == ["Mailgate"], msgs[i]
    assert "RejectedByMailgate" in msgs[rejected]["categories"], msgs[rejected]
    assert msgs[already_read]["categories"] == [] and msgs[already_read]["value_downloads"] == 0
    # Paging: the unread list was read over more than one page.
    lists = [r for r in graph.requests("GET") if "mailFolders" in r["path"] and r["path"].endswith("/messages")]
    assert any("$skiptoken" in r["query"] for r in lists), lists
    assert oauth.state()["refreshes"] == 1

    # A second sync imports nothing new (marked messages are not listed again).
    assert sync(g).status == 200
    assert message_count(g) == 4 and len(g.rejections()) == 1
    assert all(m["value_downloads"] == 1 for i, m in graph.messages().items() if i != already_read)

    # The cached access token dies at Graph two requests into the next sync.
    first = oauth.state()["issued_access_tokens"]
    assert len(first) == 1
    more = [graph.add(mail(n)) for n in range(7, 11)]
    graph.control("POST", "/_fake/tokens", {"accept": [], "expire_after": {first[0]: 2}})
    r = sync(g)
    assert r.status == 200, (r.status, r.body, g.log_tail(30))
    wait_until(lambda: message_count(g) == 8, 30, "the four new messages", g=g)
    state = oauth.state()
    assert state["refreshes"] == 2 and len(state["issued_access_tokens"]) == 2, state["requests"]
    wait_until(lambda: all(graph.messages()[i]["isRead"] for i in more), 30, "marked", g=g)
    assert mailbox(g)["last_error"] in (None, ""), mailbox(g)

    api = g.http("GET", "/api/v1/mailboxes", token=g.token).body.decode()
    tickets = json.dumps(g.tickets())
    assert_no_secrets(g, oauth, api, tickets)


def test_429_with_retry_after_is_throttled_then_imported(make_gateway, peers, tmp_path):
    oauth, graph = peers
    graph.inject(method="GET", path_contains="/messages", status=429,
                 code="TooManyRequests", retry_after=3, times=1)
    mid = graph.add(mail(1))
    # A short poll_interval: the retry comes after max(backoff, Retry-After).
    g = start(make_gateway, peers, tmp_path, poll_interval="1s")
    mb = wait_until(lambda: mailbox(g)["last_error_kind"] and mailbox(g), 30,
                    "the throttled sync", g=g)
    assert mb["last_error_kind"] == "throttled", mb
    assert message_count(g) == 0
    # The scheduler comes back by itself, no sooner than Retry-After asked.
    wait_until(lambda: message_count(g) == 1, 60, "the import after the throttle", g=g)
    wait_until(lambda: graph.messages()[mid]["isRead"], 30, "marked", g=g)
    assert_no_secrets(g, oauth, json.dumps(mailbox(g)))


def test_sigkill_between_commit_and_mark_gives_no_duplicate(make_gateway, peers, tmp_path):
    oauth, graph = peers
    # The mark (PATCH) stalls: the gateway has committed and waits for Graph.
    graph.inject(method="PATCH", path_contains="/messages/", status=503, delay=60, times=1)
    mid = graph.add(mail(1))
    g = start(make_gateway, peers, tmp_path)
    wait_until(lambda: graph.requests("PATCH"), 30, "the mark request", g=g)
    assert message_count(g) == 1, "the commit comes before the mark"
    assert not graph.messages()[mid]["isRead"]
    g.stop(signal.SIGKILL)

    g.start()
    wait_until(lambda: graph.messages()[mid]["isRead"], 30, "the mark after the restart", g=g)
    assert "Mailgate" in graph.messages()[mid]["categories"]
    assert sync(g).status == 200
    assert message_count(g) == 1 and len(g.tickets()) == 1, g.tickets()
    assert graph.messages()[mid]["value_downloads"] >= 1
    assert_no_secrets(g, oauth, json.dumps(g.tickets()))
