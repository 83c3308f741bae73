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

import os
import re
import signal
import subprocess
import threading
import time

from harness import TOKEN_ENV, Gateway
from mailmsg import make_msg

MESSAGES = 300
DROPPED_RE = re.compile(r"log lines were dropped.*\btotal=(\d+)")


class UnreadGateway(Gateway):
    """A gateway whose stderr is a pipe this test reads only when it chooses."""

    def _start_once(self):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self._log_path = self.workdir / f"stderr.{self.starts}.log"
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
        env.setdefault("NO_COLOR", "1")
        env.update(self.extra_env)
        read_end, write_end = os.pipe()
        self.pipe = os.fdopen(read_end, "rb", buffering=0)
        with open(self.workdir / f"stdout.{self.starts}.log", "wb") as out:
            self.proc = subprocess.Popen(
                [self.binary, "serve", "--config", str(self.config_path)],
                cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=write_end, env=env)
        os.close(write_end)

    def drain(self) -> tuple[threading.Thread, list[bytes]]:
        """Start reading the pipe (into the returned list) until it closes."""
        chunks: list[bytes] = []

        def run():
            while True:
                b = self.pipe.read(65536)
                if not b:
                    return
                chunks.append(b)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t, chunks


def test_a_stalled_log_reader_costs_log_lines_not_mail(mailgate_bin, tmp_path):
    # A small buffer so that a few hundred messages overflow it.
    g = UnreadGateway(mailgate_bin, tmp_path / "gw", env={"MAILGATE_LOG_BUFFER_LINES": "64"})
    g.start()
    try:
        s = g.smtp()
        try:
            for i in range(MESSAGES):
                reply = g.send(make_msg(f"unread log {i}"), smtp=s)
                assert reply.code == 250, f"message {i}: {reply}"
        finally:
            s.quit()
        tickets = g.tickets()
        assert len(tickets) == MESSAGES

        # The lines that did not fit are counted (reported every 2 s).
        deadline = time.monotonic() + 30
        while (dropped := g.metrics().get("mailgate_log_lines_dropped_total")) == 0:
            assert time.monotonic() < deadline, "no dropped log lines counted"
            time.sleep(0.2)
        assert dropped > 0

        # Reading again: the log says what was lost, and the gateway still logs.
        t, chunks = g.drain()
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
    g = UnreadGateway(mailgate_bin, tmp_path / "gw", env={"MAILGATE_LOG_BUFFER_LINES": "64"})
    g.start()
    try:
        s = g.smtp()
        try:
            for i in range(200):
                assert g.send(make_msg(f"before stop {i}"), smtp=s).code == 250
        finally:
            s.quit()
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
        deadline = time.monotonic() + 10
        while "MAILGATE_LOG_BUFFER_LINES must be a whole number" not in g.log_text():
            assert time.monotonic() < deadline, g.log_tail()
            time.sleep(0.1)
        assert g.send(make_msg("still works")).code == 250
    finally:
        assert g.stop(signal.SIGTERM) == 0
