"""The certs/ folder the README promises: tracked in git with its README,
while the certificate and key files `mailgate serve` generates there are
ignored (names taken from what the real binary wrote)."""

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def git(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture
def repo():
    if git("rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
        pytest.skip(f"{REPO} is not a git work tree")
    return REPO


def test_default_dev_cert_dir_is_certs(repo):
    conf = (repo / "config" / "mailgate.toml").read_text()
    assert re.search(r'^dev_cert_dir = "certs"$', conf, re.M), \
        "the embedded default must make the development certificate under certs/"


def test_certs_readme_tracked_generated_files_ignored(repo, gw):
    assert git("ls-files", "--error-unmatch", "certs/README.md").returncode == 0, \
        "certs/README.md must be tracked, so certs/ exists in a fresh clone"
    assert git("check-ignore", "-q", "certs/README.md").returncode == 1, \
        "certs/README.md must not be ignored"
    generated = sorted(p.name for p in gw.cert_path.parent.iterdir())
    assert {"dev-cert.pem", "dev-key.pem"} <= set(generated), generated
    for name in generated:
        r = git("check-ignore", "-q", f"certs/{name}")
        assert r.returncode == 0, f"certs/{name} (made by mailgate serve) is not git-ignored"
    assert git("ls-files", "certs").stdout.split() == sorted(["certs/.gitignore",
                                                            "certs/README.md"])
