"""The real-world corpus (../shared/corpus-dev.tar.gz, 3,059 messages): every
message gets a 250 naming a message, a rejection or a duplicate, the API shows
exactly those, the raw is byte-exact, and nothing panics."""

import collections
import email
import email.policy
import email.utils
import os
import re
import smtplib
import tarfile
import threading

import pytest

import conftest
from harness import parse_data_reply

SIMPLE_ADDR = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
FIXED_SENDER = "corpus@client.test"
THREADS = 4


def _load(root):
    jobs = []
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            path = os.path.join(dirpath, f)
            raw = open(path, "rb").read()
            # bare LF -> CRLF (the corpus is stored with Unix line endings)
            data = re.sub(rb"\r?\n", b"\r\n", raw)
            if not data.endswith(b"\r\n"):
                data += b"\r\n"
            head = data.split(b"\r\n\r\n", 1)[0]
            msg = email.message_from_bytes(head + b"\r\n\r\n", policy=email.policy.compat32)
            sender = FIXED_SENDER
            try:
                addrs = email.utils.getaddresses([str(msg.get("From", ""))])
                if addrs and SIMPLE_ADDR.match(addrs[0][1] or ""):
                    sender = addrs[0][1]
            except Exception:  # noqa: BLE001 - odd headers: use the fixed sender
                pass
            m = re.search(rb"(?im)^message-id:[ \t]*<([^>\r\n]*)>", head)
            mid = m.group(1).decode("latin-1") if m else None
            jobs.append({"file": os.path.relpath(path, root), "data": data, "sender": sender, "mid": mid})
    jobs.sort(key=lambda j: j["file"])
    return jobs


def _worker(g, jobs, results, lock):
    s = None
    for job in jobs:
        opts = ["BODY=8BITMIME"] if any(b > 127 for b in job["data"]) else []
        for attempt in range(2):
            try:
                if s is None:
                    s = g.smtp(timeout=120)
                code, text = s.mail(job["sender"], opts)
                if code != 250:
                    res = ("mail", code, text.decode("utf-8", "replace"))
                    s.rset()
                    break
                code, text = s.rcpt("support@example.test")
                if code != 250:
                    res = ("rcpt", code, text.decode("utf-8", "replace"))
                    s.rset()
                    break
                code, text = s.data(job["data"])
                res = ("data", code, text.decode("utf-8", "replace"))
                break
            except (smtplib.SMTPException, OSError) as e:
                res = ("error", 0, repr(e))
                try:
                    if s is not None:
                        s.close()
                except Exception:  # noqa: BLE001
                    pass
                s = None
                if not g.alive():
                    break
        with lock:
            results[job["file"]] = res
        if not g.alive():
            break
    if s is not None:
        try:
            s.quit()
        except Exception:  # noqa: BLE001
            s.close()


@pytest.mark.corpus
@pytest.mark.timeout(1800)
def test_corpus_every_message_accounted_for(make_gateway, corpus_tarball, tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    with tarfile.open(corpus_tarball) as tar:
        try:
            tar.extractall(root, filter="data")
        except TypeError:  # Python without extraction filters
            tar.extractall(root)
    jobs = _load(root)
    assert len(jobs) >= 3000, f"corpus has only {len(jobs)} files"

    g = make_gateway({"limits": {"max_message_size": "50MB"}})
    results, lock = {}, threading.Lock()
    threads = [threading.Thread(target=_worker, args=(g, jobs[n::THREADS], results, lock))
               for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert g.alive(), f"mailgate died during the corpus run:\n{g.log_tail(60)}"

    # 1. every message got a 250 naming a message, a rejection or a duplicate
    failures = []
    outcomes = {}
    for job in jobs:
        stage, code, text = results.get(job["file"], ("missing", 0, "not sent"))
        reply = parse_data_reply(code, text) if stage == "data" else None
        ok = (reply is not None and code == 250 and len(reply.outcomes) == 1
              and reply.outcomes[0].kind in ("message", "rejection", "duplicate"))
        if ok:
            outcomes[job["file"]] = reply.outcomes[0]
        else:
            failures.append(f"{job['file']}: {stage} {code} {text[:120]}")

    # counts, printed whatever happens next
    counts = collections.Counter()
    by_dir = collections.defaultdict(collections.Counter)
    for f, o in outcomes.items():
        key = f"rejection:{o.reason}" if o.kind == "rejection" else o.kind
        counts[key] += 1
        by_dir[os.path.dirname(f)][key] += 1
    lines = [f"corpus: {len(jobs)} files, {len(outcomes)} accounted for, {len(failures)} failed"]
    lines += [f"  {k:32} {v}" for k, v in sorted(counts.items())]
    for d, c in sorted(by_dir.items()):
        lines.append(f"  {d}: " + ", ".join(f"{k}={v}" for k, v in sorted(c.items())))
    conftest.SUMMARY.extend(lines)
    print("\n".join(lines))
    report = os.environ.get("MAILGATE_CORPUS_REPORT")
    if report:  # file <TAB> outcome, for looking at the classifier's decisions
        with open(report, "w") as fh:
            for job in jobs:
                o = outcomes.get(job["file"])
                what = (f"rejection:{o.reason}" if o.kind == "rejection" else o.kind) if o else "FAILED"
                fh.write(f"{job['file']}\t{what}\t{o.id if o else ''}\n")

    assert not failures, (f"{len(failures)} corpus messages did not get a 250 with an outcome:\n"
                          + "\n".join(failures[:15]))

    # 2. the API shows exactly those ids, with the right Message-ID and raw bytes
    msg_ids = {f: o.id for f, o in outcomes.items() if o.kind == "message"}
    rej_ids = {f: o.id for f, o in outcomes.items() if o.kind == "rejection"}
    by_file = {j["file"]: j for j in jobs}
    problems = []
    for f, mid in msg_ids.items():
        r = g.http("GET", f"/api/v1/messages/{mid}")
        if r.status != 200:
            problems.append(f"{f}: GET /api/v1/messages/{mid} -> {r.status}")
            continue
        m = r.json()
        if by_file[f]["mid"] is not None and m["message_id"] != by_file[f]["mid"].strip():
            problems.append(f"{f}: message_id {m['message_id']!r} != {by_file[f]['mid']!r}")
        raw = g.raw("messages", mid)
        if raw.status != 200 or raw.body != by_file[f]["data"]:
            problems.append(f"{f}: raw of message {mid} differs from what was sent ({raw.status})")
    for f, rid in rej_ids.items():
        rec = g.http("GET", f"/api/v1/rejections/{rid}")
        if rec.status != 200:
            problems.append(f"{f}: GET /api/v1/rejections/{rid} -> {rec.status}")
            continue
        if rec.json()["reason"] != outcomes[f].reason:
            problems.append(f"{f}: rejection {rid} reason {rec.json()['reason']} != reply's {outcomes[f].reason}")
        if rec.json()["raw_available"]:
            raw = g.raw("rejections", rid)
            if raw.status != 200 or raw.body != by_file[f]["data"]:
                problems.append(f"{f}: raw of rejection {rid} differs from what was sent")
    assert not problems, f"{len(problems)} API mismatches:\n" + "\n".join(problems[:15])

    listed_msgs = {str(m["id"]) for t in g.tickets() for m in g.ticket(t["id"])["messages"]}
    assert listed_msgs == set(msg_ids.values()), (
        f"API lists {len(listed_msgs)} messages, replies named {len(set(msg_ids.values()))}: "
        f"extra {sorted(listed_msgs - set(msg_ids.values()))[:5]}, "
        f"missing {sorted(set(msg_ids.values()) - listed_msgs)[:5]}")
    listed_rej = {str(r["id"]) for r in g.rejections()}
    assert listed_rej == set(rej_ids.values()), (
        f"API lists {len(listed_rej)} rejections, replies named {len(set(rej_ids.values()))}")
    # every duplicate repeats a message whose Message-ID (or bytes) was recorded
    recorded_mids = {by_file[f]["mid"].strip() for f in list(msg_ids) + list(rej_ids)
                     if by_file[f]["mid"] is not None}
    for f, o in outcomes.items():
        if o.kind == "duplicate" and by_file[f]["mid"] is not None:
            assert by_file[f]["mid"].strip() in recorded_mids, f"{f}: duplicate of nothing recorded"
