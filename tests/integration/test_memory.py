"""Memory and the spool: one large message stays within a bound on the
process's peak resident memory (VmHWM from /proc), comes back intact, and
large messages pass through spool files that never outlive their answer."""

import base64
import os
import subprocess
import time

import pytest

from harness import TOKEN_ENV

TOKEN = "memory-test-token"
MB = 1_000_000
MIB = 1024 * 1024
SIZE = 45 * MB

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")


def status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                out[key] = int(value.split()[0]) * 1024
    return out


def big_message(payload: bytes, tag: str, sender: bool = True) -> bytes:
    b64 = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    head = (f"From: Big <big@client.test>\r\n" if sender else "") + (
        "To: support@example.test\r\n"
        f"Subject: large {tag}\r\n"
        f"Message-ID: <large-{tag}-{time.time_ns()}@client.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
    )
    return head.encode() + (
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe file is attached.\r\n"
        b"--b1\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=\"big.bin\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"--b1--\r\n"
    )


@pytest.fixture
def gw(make_gateway):
    return make_gateway({"limits": {"max_message_size": 50 * MB}}, env={TOKEN_ENV: TOKEN},
                        token=TOKEN)


def spool_files(g) -> list:
    spool = g.workdir / "data" / "spool"
    return sorted(p.name for p in spool.iterdir()) if spool.exists() else []


def test_one_large_message_stays_within_the_memory_bound_and_is_stored_intact(gw):
    time.sleep(0.5)
    idle = status(gw.proc.pid)["VmRSS"]
    payload = os.urandom(SIZE * 3 // 4 - 8192)
    msg = big_message(payload, "one")
    assert len(msg) > 44 * MB
    reply = gw.send(msg)
    peak = status(gw.proc.pid)["VmHWM"]
    m, _ = gw.stored(reply)
    raw = gw.raw("messages", m["id"])
    assert raw.status == 200 and raw.body == msg, "the raw message must come back byte for byte"
    assert m["text"].strip() == "The file is attached."
    assert [(a["name"], a["size"]) for a in m["attachments"]] == [("big.bin", len(payload))]
    att = gw.http("GET", f"/api/v1/messages/{m['id']}/attachments/0", token=TOKEN)
    assert att.status == 200 and att.body == payload
    # Generous: the received bytes, the decoded attachment and the store's
    # write buffer, each once, over the idle process. The old code held about
    # six copies (+257 MiB for this message).
    bound = idle + 3 * len(msg)
    assert peak <= bound, (
        f"peak RSS {peak / MIB:.0f} MiB over {bound / MIB:.0f} MiB "
        f"(idle {idle / MIB:.0f} MiB + 3 x {len(msg) / MIB:.0f} MiB)")
    assert spool_files(gw) == [], "the spool file must be gone once the message is committed"


def test_spool_files_go_after_a_rejection_and_an_oversize_message(gw):
    # Over the spool threshold, but without a sender: recorded as a rejection.
    msg = big_message(os.urandom(3 * MB), "nosender", sender=False)
    reply = gw.send(msg)
    assert reply.rejection().reason == "no_sender", str(reply)
    assert spool_files(gw) == []
    rej = gw.raw("rejections", reply.rejection().id)
    assert rej.status == 200 and rej.body == msg
    # Over the size cap after spooling began: 552, nothing kept, no file left.
    s = gw.smtp()
    try:
        assert s.mail("big@client.test")[0] == 250
        assert s.rcpt("support@example.test")[0] == 250
        code, _ = s.data(big_message(os.urandom(40 * MB), "oversize"))
        assert code == 552
    finally:
        s.close()
    assert spool_files(gw) == []
    # A client that goes away in the middle of a large message leaves nothing.
    r = gw.raw_smtp()
    r.expect("EHLO client.test", 250)
    r.expect("MAIL FROM:<big@client.test>", 250)
    r.expect("RCPT TO:<support@example.test>", 250)
    r.expect("DATA", 354)
    r.send(b"From: a@client.test\r\nSubject: cut\r\n\r\n")
    r.send((b"y" * 998 + b"\r\n") * 3000)
    deadline = time.monotonic() + 30
    while not spool_files(gw) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(spool_files(gw)) == 1, "a 3 MB message in flight is spooled"
    r.close()
    deadline = time.monotonic() + 30
    while spool_files(gw) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spool_files(gw) == []


def test_the_spool_is_private_and_emptied_at_start(make_gateway):
    g = make_gateway({}, env={TOKEN_ENV: TOKEN}, token=TOKEN, start=False)
    spool = g.workdir / "data" / "spool"
    spool.mkdir(parents=True)
    os.chmod(g.workdir / "data", 0o700)
    (spool / "4242-1.eml").write_bytes(b"From: a@b.test\r\n\r\nleft by a crash\r\n")
    g.start()
    assert spool_files(g) == []
    assert os.stat(spool).st_mode & 0o777 == 0o700


def test_store_cache_size_is_checked_by_name(mailgate_bin, make_gateway):
    good = make_gateway({"store": {"cache_size": "8MiB"}}, env={TOKEN_ENV: TOKEN}, token=TOKEN)
    reply = good.send(b"From: a@client.test\r\nSubject: hi\r\n\r\nsmall cache\r\n")
    m, _ = good.stored(reply)
    assert m["text"].strip() == "small cache"
    bad = make_gateway({"store": {"cache_size": "lots"}}, start=False)
    r = subprocess.run([mailgate_bin, "check-config", "--config", str(bad.config_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "store.cache_size" in r.stderr + r.stdout
