"""Fixtures for the integration suite: real mailgate processes on 127.0.0.1.

MAILGATE_BIN names the binary (scripts/test.sh sets it to target/debug/mailgate).
"""

from __future__ import annotations

import itertools
import os
import signal
from pathlib import Path

import pytest

import harness
from harness import Gateway
# The upstream IMAP servers (Dovecot, Courier, Cyrus) shared by the session.
from imap_servers import imap_server, imap_server_instances  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]

# Lines for the end-of-run summary (e.g. the corpus outcome counts).
SUMMARY: list[str] = []


@pytest.fixture(scope="session")
def mailgate_bin() -> str:
    path = os.path.abspath(os.environ.get("MAILGATE_BIN") or str(REPO / "target" / "debug" / "mailgate"))
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"mailgate binary not found at {path}: run `cargo build` or set MAILGATE_BIN",
                    pytrace=False)
    return path


_seq = itertools.count(1)


@pytest.fixture
def make_gateway(mailgate_bin, tmp_path):
    """Factory: make_gateway(config_overrides=None, env=None, start=True) -> Gateway.

    Each gateway gets its own ports, data dir and dev-cert dir under tmp_path.
    All are stopped (SIGTERM, then SIGKILL) when the test ends.
    """
    made: list[Gateway] = []

    def factory(config_overrides: dict | None = None, env: dict | None = None,
                start: bool = True, token: str | None = None) -> Gateway:
        n = next(_seq)
        g = Gateway(mailgate_bin, tmp_path / f"gw{n}", config_overrides, env=env, name=f"gw{n}")
        g.token = token
        made.append(g)
        if start:
            g.start()
        return g

    yield factory
    for g in made:
        if g.alive():
            try:
                g.stop(signal.SIGTERM, timeout=20)
            except AssertionError:
                pass  # stop() already killed it


_shared: dict[str, Gateway] = {}


@pytest.fixture(scope="session")
def _shared_gateway(mailgate_bin, tmp_path_factory):
    g = Gateway(mailgate_bin, tmp_path_factory.mktemp("shared"), name="shared")
    _shared["gw"] = g
    g.start()
    yield g
    if g.alive():
        try:
            g.stop(signal.SIGTERM, timeout=20)
        except AssertionError:
            pass


@pytest.fixture
def gw(_shared_gateway):
    """The shared gateway (support = default mailbox, sales), for tests that use
    unique Message-IDs and look only at what they sent. Fails the test if the
    gateway dies during it; restarts it (same data) if an earlier test killed it."""
    g = _shared_gateway
    if not g.alive():
        g.start()
    yield g
    if not g.alive():
        pytest.fail(f"the shared mailgate died during this test (exit {g.proc.returncode}):\n"
                    f"{g.log_tail(60)}", pytrace=False)


@pytest.fixture(scope="session")
def corpus_tarball() -> Path:
    path = (REPO / ".." / "shared" / "corpus-dev.tar.gz").resolve()
    if not path.is_file():
        pytest.fail(f"corpus not found: expected {path} (../shared/corpus-dev.tar.gz relative to "
                    f"the repo root). This test needs it; it does not skip.", pytrace=False)
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("call", "setup", "teardown"):
        shared = set(_shared.values())
        for g in list(harness.ACTIVE) + [x for x in shared if x not in harness.ACTIVE]:
            if g in shared and "gw" not in getattr(item, "fixturenames", ()):
                continue
            if g.starts and g.proc is not None:
                state = "running" if g.alive() else f"exited {g.proc.returncode}"
                rep.sections.append((f"mailgate {g.name} stderr ({state}, last 40 lines)",
                                     g.log_tail(40)))


def pytest_terminal_summary(terminalreporter):
    if SUMMARY:
        terminalreporter.section("mailgate summary")
        for line in SUMMARY:
            terminalreporter.write_line(line)
