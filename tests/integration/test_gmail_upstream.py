"""End to end through `mailgate serve`: a `protocol = "gmail"` mailbox reads
the fake Gmail API (fakes/gmail.py) with access tokens from the fake
authorization server (fakes/oauth_server.py, Google flavour). The Gmail fake
takes exactly the tokens the authorization server issued (it asks it).

Covered: unread messages imported once, paging over nextPageToken, labels by
outcome (created when missing), a token refused mid-sync (one refresh, the
sync goes on), 429 rateLimitExceeded then success, SIGKILL between the
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
from fakes.gmail import GmailFake
from fakes.oauth_server import OAuthFake
from harness import SALES, SUPPORT
from imapbase import _certificates

CLIENT_ID = "81422-gmail-e2e.apps.googleusercontent.com"
CLIENT_SECRET = "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-value"
SEED = "1//0g-gmail-upstream-initial-refresh-token"
ADDRESS = "support@example.test"


def private_file(path, text):
    path.write_text(text)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return str(path)


class Gmail:
    """The Gmail fake plus its control API over HTTPS."""

    def __init__(self, oauth: OAuthFake):
        self.oauth = oauth
        self.ca = oauth.ca
        self.fake = GmailFake(str(oauth.dir / "cert.pem"), str(oauth.dir / "key.pem"), ADDRESS,
                              resolver=lambda t: t in oauth.state()["issued_access_tokens"])
        self.fake.start()

    def control(self, method, path, obj=None):
        ctx = ssl.create_default_context(cafile=str(self.ca))
        conn = http.client.HTTPSConnection("localhost", self.fake.port, context=ctx, timeout=30)
        try:
            body = json.dumps(obj).encode() if obj is not None else None
            conn.request(method, "/_control/" + path, body=body,
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            assert r.status == 200, (r.status, data)
            return json.loads(data) if data else {}
        finally:
            conn.close()

    def add(self, raw: bytes, labels=None):
        obj = {"raw_b64": base64.b64encode(raw).decode()}
        if labels is not None:
            obj["labelIds"] = labels
        return self.control("POST", "messages", obj)["id"]

    def error(self, **e):
        self.control("POST", "errors", e)

    def state(self):
        return self.control("GET", "state")

    def labels(self) -> dict[str, list[str]]:
        """message id -> its label names."""
        s = self.state()
        names = {lb["id"]: lb["name"] for lb in s["labels"]}
        return {m["id"]: sorted(names.get(i, i) for i in m["labelIds"]) for m in s["messages"]}

    def requests(self, prefix=""):
        return [r for r in self.state()["requests"] if r.startswith(prefix)]


@pytest.fixture
def peers(tmp_path):
    oauth = OAuthFake(tmp_path / "oauth-fake", _certificates(), flavor="google",
                      client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_tokens=[SEED])
    gmail = Gmail(oauth)
    yield oauth, gmail
    gmail.fake.stop()
    oauth.stop()


def start(make_gateway, peers, tmp_path, **upstream_over):
    oauth, gmail = peers
    support = dict(SUPPORT)
    support["upstream"] = {"protocol": "gmail", "api_base": gmail.fake.url,
                           "ca_file": str(oauth.ca), "poll_interval": "1h", "idle": False,
                           **upstream_over}
    support["oauth2"] = {
        "provider": "google", "client_id": CLIENT_ID,
        "token_url": oauth.token_url(), "authorize_url": oauth.authorize_url(),
        "client_secret_file": private_file(tmp_path / "client-secret", CLIENT_SECRET),
        "refresh_token_file": private_file(tmp_path / "refresh-token", SEED),
        "ca_file": str(oauth.ca),
    }
    return make_gateway({"mailbox": [support, dict(SALES)]}, env={"MAILGATE_LOG": "debug"})


def mail(n: int, extra: str = "") -> bytes:
    return (f"From: Customer {n} <c{n}@example.org>\r\nTo: support@example.test\r\n"
            f"Subject: gmail {n}\r\nMessage-ID: <gmail{n}@example.org>\r\n{extra}\r\n"
            f"body {n}\r\n").encode()


def bulk(n: int) -> bytes:
    return mail(n, "Precedence: bulk\r\nAuto-Submitted: auto-generated\r\n")


def subjects(g) -> list[str]:
    return sorted(t["subject"] for t in g.tickets())


def sync(g):
    return g.http_json("POST", "/api/v1/mailboxes/support/sync", {})


def marked(labels: list[str]) -> bool:
    return "UNREAD" not in labels and "Mailgate" in labels


def assert_no_secrets(g, oauth, *texts):
    s = oauth.state()
    secrets = [CLIENT_SECRET, SEED, *s["issued_access_tokens"], *s["issued_refresh_tokens"]]
    assert len(s["issued_access_tokens"]) >= 1
    db = (g.workdir / "data" / "mailgate.redb").read_bytes()
    logs = "".join(g.log_text(i) for i in range(1, g.starts + 1))
    assert "DEBUG" in logs, "the debug log is read"
    for secret in secrets:
        assert secret.encode() not in db, "a token is in the database file in clear"
        assert secret not in logs, "a token is in the log"
        for t in texts:
            assert secret not in t, "a token is in an API answer"


def test_import_once_paging_labels_and_a_refresh_mid_sync(make_gateway, peers, tmp_path):
    oauth, gmail = peers
    gmail.control("POST", "page", {"max": 2})
    ids = [gmail.add(mail(n)) for n in range(1, 5)]
    rejected = gmail.add(bulk(5))
    read = gmail.add(mail(6), labels=["INBOX"])
    assert not any(lb["name"] == "Mailgate" for lb in gmail.state()["labels"])
    g = start(make_gateway, peers, tmp_path)
    wait_until(lambda: message_count(g) == 4 and len(g.rejections()) == 1, 30,
               "four tickets and one rejection", g=g)
    wait_until(lambda: all(marked(gmail.labels()[i]) for i in ids + [rejected]), 30,
               "all marked", g=g)
    assert subjects(g) == [f"gmail {n}" for n in range(1, 5)]
    labels = gmail.labels()
    for i in ids:
        assert "RejectedByMailgate" not in labels[i], labels[i]
    assert "RejectedByMailgate" in labels[rejected], labels[rejected]
    assert labels[read] == ["INBOX"], labels[read]
    # The labels were created (they did not exist), each once.
    names = [lb["name"] for lb in gmail.state()["labels"]]
    assert names.count("Mailgate") == 1 and names.count("RejectedByMailgate") == 1, names
    # Paging: the unread list was read over more than one page.
    assert any("pageToken=" in r for r in gmail.requests("GET /gmail/v1/users/")), \
        gmail.requests("GET")
    assert oauth.state()["refreshes"] == 1

    # A second sync imports nothing new.
    raws = len([r for r in gmail.requests("GET") if "format=raw" in r])
    assert sync(g).status == 200
    assert message_count(g) == 4 and len(g.rejections()) == 1
    assert len([r for r in gmail.requests("GET") if "format=raw" in r]) == raws

    # The cached access token dies two requests into the next sync.
    first = oauth.state()["issued_access_tokens"]
    assert len(first) == 1
    more = [gmail.add(mail(n)) for n in range(7, 11)]
    gmail.control("POST", "tokens", {"tokens": [], "limits": {first[0]: 2}})
    r = sync(g)
    assert r.status == 200, (r.status, r.body, g.log_tail(30))
    wait_until(lambda: message_count(g) == 8, 30, "the four new messages", g=g)
    state = oauth.state()
    assert state["refreshes"] == 2 and len(state["issued_access_tokens"]) == 2, state["requests"]
    wait_until(lambda: all(marked(gmail.labels()[i]) for i in more), 30, "marked", g=g)
    assert mailbox(g)["last_error"] in (None, ""), mailbox(g)

    api = g.http("GET", "/api/v1/mailboxes", token=g.token).body.decode()
    assert_no_secrets(g, oauth, api, json.dumps(g.tickets()))


def test_429_rate_limit_is_throttled_then_imported(make_gateway, peers, tmp_path):
    oauth, gmail = peers
    # The provider retries a rate limit itself (Retry-After each time, 3 more
    # tries) before it gives the sync up as throttled: 4 refusals.
    listing = "GET /gmail/v1/users/me/messages?"
    gmail.error(status=429, reason="rateLimitExceeded", match=listing, retry_after=3, count=4)
    mid = gmail.add(mail(1))
    g = start(make_gateway, peers, tmp_path, poll_interval="1s")
    mb = wait_until(lambda: mailbox(g)["last_error_kind"] and mailbox(g), 30,
                    "the throttled sync", g=g)
    assert mb["last_error_kind"] == "throttled", mb
    assert message_count(g) == 0
    assert len(gmail.requests(listing)) == 4, gmail.requests()
    # The scheduler comes back by itself, no sooner than Retry-After asked.
    wait_until(lambda: message_count(g) == 1, 60, "the import after the throttle", g=g)
    wait_until(lambda: marked(gmail.labels()[mid]), 30, "marked", g=g)
    # The sync that imported it ends and says so (after the mark).
    mb = wait_until(lambda: mailbox(g)["status"] == "ok" and mailbox(g), 30, "status ok", g=g)
    assert mb["imported"] == 1, mb
    assert_no_secrets(g, oauth, json.dumps(mailbox(g)))


def test_sigkill_between_commit_and_mark_gives_no_duplicate(make_gateway, peers, tmp_path):
    oauth, gmail = peers
    # The mark (messages.modify) stalls: the gateway has committed and waits.
    gmail.error(status=503, match="/modify", delay=60, count=1)
    mid = gmail.add(mail(1))
    g = start(make_gateway, peers, tmp_path)
    wait_until(lambda: gmail.requests("POST") and any("/modify" in r for r in gmail.requests("POST")),
               30, "the mark request", g=g)
    assert message_count(g) == 1, "the commit comes before the mark"
    assert not marked(gmail.labels()[mid])
    g.stop(signal.SIGKILL)

    g.start()
    wait_until(lambda: marked(gmail.labels()[mid]), 30, "the mark after the restart", g=g)
    assert sync(g).status == 200
    assert message_count(g) == 1 and len(g.tickets()) == 1, g.tickets()
    assert_no_secrets(g, oauth, json.dumps(g.tickets()))
