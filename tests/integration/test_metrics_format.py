"""/metrics speaks both expositions: the classic Prometheus text format 0.0.4
by default (promtool and older scrapers read it without complaint) and
OpenMetrics 1.0 when the Accept header asks for it, as Prometheus does."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mailmsg import make_msg, new_msgid, unique

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
CLASSIC = "text/plain; version=0.0.4; charset=utf-8"
# What Prometheus 2.x sends when scraping.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,"
                     "application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: run scripts/install-test-deps.sh (Debian package "
                    "`prometheus`). This test needs it; it does not skip.", pytrace=False)
    return path


def check_metrics(promtool: str, body: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                          timeout=60)


@pytest.fixture
def busy_gw(gw):
    """The shared gateway after a message, a duplicate and a rejection, so that
    counters, gauges and histograms all have samples."""
    dup = make_msg(f"metrics {unique()}", msgid=new_msgid())
    gw.send(dup).message()
    gw.send(dup).one("duplicate")
    gw.send(make_msg(f"metrics {unique()}", headers=[("Precedence", "bulk")])).rejection()
    return gw


@pytest.mark.parametrize("accept", [None, "text/plain", "text/plain;version=0.0.4", "*/*",
                                    "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"])
def test_classic_format_passes_promtool(busy_gw, promtool, accept):
    r = busy_gw.http("GET", "/metrics", headers={"Accept": accept} if accept else None)
    assert r.status == 200, r
    assert r.headers.get("Content-Type") == CLASSIC, r.headers
    assert "Accept" in r.headers.get("Vary", ""), r.headers
    text = r.body.decode()
    assert "# EOF" not in text
    names = [line.split("{")[0].split(" ")[0] for line in text.splitlines()
             if line and not line.startswith("#")]
    assert names and not [n for n in names if n.endswith("_created")], "no _created samples"
    assert "# HELP mailgate_messages_received_total " in text
    assert "# TYPE mailgate_messages_received_total counter" in text
    assert "# TYPE mailgate_store_commit_seconds histogram" in text
    p = check_metrics(promtool, r.body)
    out = (p.stdout + p.stderr).decode()
    assert p.returncode == 0 and out.strip() == "", f"promtool check metrics:\n{out}"


@pytest.mark.parametrize("accept", [PROMETHEUS_ACCEPT, "application/openmetrics-text",
                                    "application/openmetrics-text; version=1.0.0"])
def test_openmetrics_when_asked(busy_gw, accept):
    r = busy_gw.http("GET", "/metrics", headers={"Accept": accept})
    assert r.status == 200, r
    assert r.headers.get("Content-Type") == OPENMETRICS, r.headers
    text = r.body.decode()
    assert text.endswith("# EOF\n"), text[-200:]
    # OpenMetrics names the counter family without _total, its samples with it.
    assert "# TYPE mailgate_messages_received counter" in text
    assert "\nmailgate_messages_received_total{" in text


def test_both_formats_carry_the_same_samples(busy_gw):
    classic = busy_gw.http("GET", "/metrics").body.decode()
    om = busy_gw.http("GET", "/metrics", headers={"Accept": PROMETHEUS_ACCEPT}).body.decode()

    def samples(text):
        return sorted(line.rsplit(" ", 1)[0] for line in text.splitlines()
                      if line and not line.startswith("#"))
    # Values may move between the two reads (other tests share the gateway); names and labels not.
    assert samples(classic) == samples(om)
