"""No 250 before the fsync, seen from the kernel's side: strace follows every
thread of a running gateway while four clients send mail, and each
"250 ... Ok: message" written to a client must come after the message's last
bytes were read from that client, then written to a file (the commit journal
with the Message-ID in it, or the database) and fdatasync'd, that fdatasync
finished. A gateway that answered from memory, or before the sync returned,
fails here."""

import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from mailmsg import make_msg, new_msgid

CLIENTS = 4
PER_CLIENT = 8

# One syscall per line (strace -f -ttt -yy): "TID TIME name(args) = result",
# or split in two around another thread's: "... <unfinished ...>" and
# "TID TIME <... name resumed>...".
LINE = re.compile(r"^(\d+)\s+[\d.]+\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")
FD = re.compile(r"^(\d+)<(TCP:\[[^\]]*\]|[^>]*)>")


def _strace():
    path = shutil.which("strace")
    if path is None:
        pytest.fail("strace is not installed: run scripts/install-test-deps.sh")
    return path


def _attach(strace, pid, out):
    proc = subprocess.Popen(
        [strace, "-f", "-p", str(pid), "-ttt", "-yy", "-s", "65536", "-o", str(out),
         "-e", "trace=read,recvfrom,write,writev,sendto,sendmsg,pwrite64,fdatasync,fsync"],
        stderr=subprocess.PIPE, text=True)
    # "Process N attached with T threads" comes once all are traced (-f
    # then follows every thread they start).
    line = proc.stderr.readline()
    if "attached" not in line and "not permitted" in line:
        # A container without ptrace: say so, visibly, instead of passing.
        proc.wait(10)
        pytest.skip(f"strace may not attach here: {line.strip()}")
    assert "attached" in line, f"strace did not attach: {line!r}"
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc


def _send_all(g):
    sent = []
    lock = threading.Lock()
    errors = []

    def client(c):
        try:
            with g.smtp() as s:
                for i in range(PER_CLIENT):
                    mid = new_msgid()
                    reply = g.send(make_msg(f"fsync {c}.{i}", msgid=mid,
                                            body=f"client {c} message {i}\r\n" * 20), smtp=s)
                    assert reply.code == 250, reply
                    with lock:
                        sent.append((mid, int(reply.message().id)))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(sent) == CLIENTS * PER_CLIENT
    return sent


def _syscalls(trace_text):
    """[(line entered, line completed, name, arguments and result)], in the
    order the calls completed; a line index is strace's order of events."""
    started = {}  # tid -> (index, name, args so far)
    calls = []
    for index, line in enumerate(trace_text.splitlines()):
        m = LINE.match(line)
        if not m:
            continue
        tid, resumed, name, rest = m.group(1), m.group(2), m.group(3), m.group(4)
        if resumed:
            entered, name, head = started.pop(tid, (index, resumed, ""))
            calls.append((entered, index, name, head + rest))
        elif rest.endswith("<unfinished ...>"):
            started[tid] = (index, name, rest[: -len("<unfinished ...>")])
        else:
            calls.append((index, index, name, rest))
    return calls


def _check(trace_text, sent, journal):
    calls = _syscalls(trace_text)
    reads = {}      # socket -> index of the last read from it that completed
    acks = []       # (entered, socket, message id in the 250, last read before)
    writes = []     # (completed index, file, bytes shown)
    syncs = []      # (entered, completed, file)
    for entered, done, name, args in calls:
        fd = FD.match(args)
        if not fd:
            continue
        target = fd.group(2)
        if name in ("read", "recvfrom") and target.startswith("TCP"):
            if not re.search(r"\)\s*=\s*0$", args):
                reads[target] = done
        elif name in ("write", "writev", "sendto", "sendmsg") and target.startswith("TCP"):
            for m in re.finditer(r"250 2\.0\.0 Ok: message (\d+) in ticket", args):
                acks.append((entered, target, int(m.group(1)), reads.get(target)))
        elif name == "pwrite64":
            writes.append((done, target, args))
        elif name in ("fdatasync", "fsync"):
            syncs.append((entered, done, target))

    by_id = {msg_id: mid for mid, msg_id in sent}
    assert sorted(a[2] for a in acks) == sorted(by_id), (acks, sent)
    for entered, sock, msg_id, read in acks:
        assert read is not None, f"250 for message {msg_id} on {sock} before any read"
        # The message's bytes written to a file after they were read ...
        if journal:
            needle = by_id[msg_id]
            written = [(w, f) for w, f, a in writes
                       if read < w < entered and f.endswith("mailgate.redb.journal") and needle in a]
        else:
            written = [(w, f) for w, f, _ in writes
                       if read < w < entered and f.endswith("mailgate.redb")]
        assert written, f"250 for message {msg_id} ({by_id[msg_id]}) before it was written to a file"
        # ... and that file synced by a call that began after the write and
        # returned before the 250 was sent.
        ok = any(w < s_in and s_out < entered and f == sf
                 for w, f in written for s_in, s_out, sf in syncs)
        assert ok, f"250 for message {msg_id} ({by_id[msg_id]}) before its fdatasync returned"


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "no-journal"])
def test_no_250_before_the_message_is_written_and_synced(make_gateway, tmp_path, journal):
    strace = _strace()
    g = make_gateway({"store": {"journal": journal}})
    out = tmp_path / "trace.txt"
    tracer = _attach(strace, g.proc.pid, out)
    try:
        sent = _send_all(g)
    finally:
        tracer.send_signal(signal.SIGINT)  # detaches; the gateway runs on
        tracer.wait(30)
    assert g.alive()
    _check(out.read_text(errors="replace"), sent, journal)
