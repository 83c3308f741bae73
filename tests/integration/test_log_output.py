"""A log reader that stops reading never stalls mail.

`mailgate serve` logs to stderr. Here stderr is a pipe that nobody reads
until the test says so: the kernel's pipe buffer fills after a few hundred
lines, and a gateway that wrote its log from the threads doing the work
stopped acknowledging mail there (measured: 137 messages, then nothing).
Now every message is acknowledged and stored while the pipe stays full, the
lines that did not fit are counted in mailgate_log_lines_dropped_total,
and once the reader reads again the log says how many were dropped.
"""

from __future__ import annotations

import re
import signal
import threading
import time

from harness import Gateway
from mailmsg import make_msg

MESSAGES = 300
DROPPED_RE = re.compile(r"log lines were dropped.*\btotal=(\d+)")


def unread_gateway(mailgate_bin, workdir) -> Gateway:
    """A gateway whose stderr is a pipe this test reads only when it chooses,
    with a small log buffer so that a few hundred messages overflow it."""
    g = Gateway(mailgate_bin, workdir, env={"MAILGATE_LOG_BUFFER_LINES": "64"})
    g.stderr_pipe = True
    return g


def drain(g: Gateway) -> tuple[threading.Thread, list[bytes]]:
    """Start reading the gateway's stderr pipe (into the returned list) until it closes."""
    chunks: list[bytes] = []

    def run():
        while True:
            b = g.pipe.read(65536)
            if not b:
                return
            chunks.append(b)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, chunks


def send_many(g: Gateway, n: int, subject: str):
    """n messages on one connection, each answered 250."""
    s = g.smtp()
    try:
        for i in range(n):
            reply = g.send(make_msg(f"{subject} {i}"), smtp=s)
            assert reply.code == 250, f"message {i}: {reply}"
    finally:
        s.quit()


def test_a_stalled_log_reader_costs_log_lines_not_mail(mailgate_bin, tmp_path):
    g = unread_gateway(mailgate_bin, tmp_path / "gw")
    g.start()
    try:
        send_many(g, MESSAGES, "unread log")
        tickets = g.tickets()
        assert len(tickets) == MESSAGES

        # The lines that did not fit are counted (reported every 2 s).
        deadline = time.monotonic() + 30
        while (dropped := g.metrics().get("mailgate_log_lines_dropped_total")) == 0:
            assert time.monotonic() < deadline, "no dropped log lines counted"
            time.sleep(0.2)
        assert dropped > 0

        # Reading again: the log says what was lost, and the gateway still logs.
        t, chunks = drain(g)
        deadline = time.monotonic() + 30
        while not DROPPED_RE.search(b"".join(chunks).decode("utf-8", "replace")):
            assert time.monotonic() < deadline, (
                "no warning about dropped lines once the reader read again:\n"
                + b"".join(chunks).decode("utf-8", "replace")[-3000:])
            time.sleep(0.2)
        assert g.stop(signal.SIGTERM) == 0
        t.join(10)
        text = b"".join(chunks).decode("utf-8", "replace")
        # A warning can be lost itself while the buffer is full; it is given
        # again until one gets through, and the last one has the total.
        reported = int(DROPPED_RE.findall(text)[-1])
        assert reported >= dropped, f"warned about {reported} of {dropped} dropped lines"
        # What was buffered at exit is written, not lost with the process.
        assert "stopped" in text.splitlines()[-1], text[-2000:]
    finally:
        if g.alive():
            g.proc.kill()
            g.proc.wait(10)


def test_shutdown_does_not_wait_for_a_stalled_log_reader(mailgate_bin, tmp_path):
    g = unread_gateway(mailgate_bin, tmp_path / "gw")
    g.start()
    try:
        send_many(g, 200, "before stop")
        # Nobody has read a byte: SIGTERM still ends the process cleanly
        # (stop() fails the test if it takes longer than the harness allows).
        assert g.stop(signal.SIGTERM) == 0
    finally:
        if g.alive():
            g.proc.kill()
            g.proc.wait(10)
    # Everything acknowledged is there on the next start.
    again = Gateway(mailgate_bin, tmp_path / "gw")
    again.start()
    try:
        assert len(again.tickets()) == 200
    finally:
        assert again.stop(signal.SIGTERM) == 0


def test_log_buffer_setting_is_checked(mailgate_bin, tmp_path):
    g = Gateway(mailgate_bin, tmp_path / "gw", env={"MAILGATE_LOG_BUFFER_LINES": "lots"})
    g.start()
    try:
        # A bad value is named with the reason, and the default is used.
        named, _ = g.wait_log("MAILGATE_LOG_BUFFER_LINES must be a whole number")
        assert named, g.log_tail()
        assert g.send(make_msg("still works")).code == 250
    finally:
        assert g.stop(signal.SIGTERM) == 0
