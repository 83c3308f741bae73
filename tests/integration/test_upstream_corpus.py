"""The real-world corpus (../shared/corpus-dev.tar.gz, 3,059 messages) pulled
from an IMAP upstream: every upstream message ends labelled (processed, or
processed + rejected), and ticket messages + rejection records + duplicates
account for every one of them."""

from __future__ import annotations

import collections
import re
import tarfile
import time

import pytest

import conftest
from dovecot import (  # noqa: F401 - fixtures
    PROCESSED, REJECTED, USER, dovecot, gateway_with, mailbox, upstream, wait_until)

EXPECTED = 3059


def load_corpus(tarball) -> list[bytes]:
    found = []
    # In archive order: seeking back in a gzip stream would decompress it again.
    with tarfile.open(tarball, "r:gz") as tar:
        for m in tar:
            if m.isfile():
                found.append((m.name, tar.extractfile(m).read()))
    out = []
    for _, raw in sorted(found):
        data = re.sub(rb"\r?\n", b"\r\n", raw)  # stored with Unix line ends
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        out.append(data)
    return out


@pytest.mark.corpus
def test_corpus_pulled_from_imap_is_fully_accounted(make_gateway, dovecot, corpus_tarball):
    d = dovecot
    raws = load_corpus(corpus_tarball)
    assert len(raws) == EXPECTED, f"corpus has {len(raws)} messages, expected {EXPECTED}"
    t0 = time.monotonic()
    # Delivered into the Maildir as an MTA would (IMAP APPEND of 3,059 takes ~4x longer).
    d.deliver(raws)
    appended = time.monotonic() - t0
    assert d.count("INBOX") == EXPECTED

    def unlabelled() -> int:
        out = d.doveadm("search", "-u", USER, "mailbox", "INBOX", "UNKEYWORD", PROCESSED)
        return len([ln for ln in out.splitlines() if ln.strip()])

    t0 = time.monotonic()
    g = gateway_with(make_gateway, upstream(d, "imap", "tls", poll_interval="5s"))
    wait_until(lambda: unlabelled() == 0, 280, f"all {EXPECTED} upstream messages labelled",
               interval=1.0, g=g, d=d)
    pulled = time.monotonic() - t0

    flags = d.flags("INBOX")
    assert len(flags) == EXPECTED
    not_seen = [uid for uid, f in flags if "\\Seen" not in f]
    assert not not_seen, f"{len(not_seen)} labelled messages without \\Seen: {not_seen[:10]}"
    rejected_upstream = sum(1 for _, f in flags if REJECTED in f)

    msgs, rejs = g.store_counts()
    m = g.metrics()
    imported = m.get("mailgate_fetch_messages_total", mailbox="support", outcome="imported")
    rejected = m.get("mailgate_fetch_messages_total", mailbox="support", outcome="rejected")
    dups = m.get("mailgate_fetch_messages_total", mailbox="support", outcome="duplicate")
    rejections = g.rejections()
    reasons = collections.Counter(r["reason"] for r in rejections)
    summary = (f"upstream corpus: {EXPECTED} messages via IMAP -> {msgs} ticket messages, "
               f"{rejs} rejections {dict(sorted(reasons.items()))}, {int(dups)} duplicates; "
               f"{rejected_upstream} labelled {REJECTED}; delivery {appended:.1f}s, "
               f"pull {pulled:.1f}s ({EXPECTED / pulled:.0f} msg/s)")
    conftest.SUMMARY.append(summary)
    print(summary)

    assert msgs + rejs + dups == EXPECTED, summary
    assert (imported, rejected) == (msgs, rejs), (imported, rejected, msgs, rejs)
    assert {r["source"] for r in rejections} <= {"imap"}
    # A duplicate is labelled like what it repeats, so the rejected label is on
    # at least every rejection and at most rejections + duplicates.
    assert rejs <= rejected_upstream <= rejs + dups, summary
    mb = mailbox(g)
    assert mb["status"] == "ok" and mb["imported"] == msgs, mb
