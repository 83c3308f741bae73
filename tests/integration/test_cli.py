"""The command line: --help, check-config, serve with a bad config."""

import subprocess

import pytest

from conftest import REPO
from harness import Gateway, to_toml


def run(binary, *args, cwd=None, timeout=60):
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("sub", ["serve", "check-config"])
def test_subcommand_help(mailgate_bin, sub):
    r = run(mailgate_bin, sub, "--help")
    assert r.returncode == 0, r.stderr
    assert "--config" in r.stdout, f"`mailgate {sub} --help` should document --config:\n{r.stdout}"


def test_top_level_help_lists_subcommands(mailgate_bin):
    r = run(mailgate_bin, "--help")
    assert r.returncode == 0, r.stderr
    for sub in ("serve", "check-config"):
        assert sub in r.stdout


def test_check_config_valid(mailgate_bin, tmp_path):
    g = Gateway(mailgate_bin, tmp_path / "gw")
    r = run(mailgate_bin, "check-config", "--config", str(g.config_path))
    assert r.returncode == 0, f"check-config refused a valid config:\n{r.stderr}\n---\n{g.config_path.read_text()}"
    assert "config OK" in r.stdout


def test_check_config_example_file(mailgate_bin):
    """The documented example config in the repo validates."""
    r = run(mailgate_bin, "check-config", "--config", str(REPO / "config" / "mailgate.toml"), cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "config OK" in r.stdout


BROKEN = """\
[server]
hostname = "localhost"
data_dir = "{tmp}/data"
domains = ["example.test"]

[smtp]
listen = ["x"]
lisen = ["127.0.0.1:2525"]

[limits]
max_message_size = "50XB"

[tls]
cert = "/nope.pem"
key = "/nope-key.pem"

[http]
listen = "127.0.0.1:8025"

[tickets]
tag = "[MG#{{number}}]"
first_number = 1000

[[mailbox]]
name = "support"
addresses = ["support@example.test"]
queue = "Support"
default = true

[[mailbox]]
name = "sales"
addresses = ["foo"]
queue = "Sales"
"""

EXPECTED_PROBLEMS = [
    # (key that must be named, another fragment on the same line)
    ("smtp.listen[0]", '"x"'),
    ("smtp.lisen", "unknown key"),
    ("limits.max_message_size", "50XB"),
    ("tls.cert", "/nope.pem"),
    ("mailbox[1].addresses[0]", '"foo"'),
]


def test_check_config_lists_every_problem(mailgate_bin, tmp_path):
    cfg = tmp_path / "broken.toml"
    cfg.write_text(BROKEN.format(tmp=tmp_path))
    r = run(mailgate_bin, "check-config", "--config", str(cfg))
    assert r.returncode != 0, f"check-config accepted a broken config:\n{r.stdout}"
    assert "config OK" not in r.stdout
    lines = r.stderr.splitlines()
    missing = []
    for key, frag in EXPECTED_PROBLEMS:
        if not any(key in line and frag in line for line in lines):
            missing.append(f"{key} ({frag})")
    assert not missing, (f"check-config did not report, each on its own line naming the key: "
                         f"{missing}\nstderr was:\n{r.stderr}")


def test_check_config_exact_messages(mailgate_bin, tmp_path):
    """The messages the spec gives as examples."""
    cfg = tmp_path / "broken.toml"
    cfg.write_text(BROKEN.format(tmp=tmp_path))
    r = run(mailgate_bin, "check-config", "--config", str(cfg))
    for expected in ['smtp.listen[0]: invalid socket address "x"',
                     "unknown key: smtp.lisen",
                     'limits.max_message_size: invalid size "50XB"',
                     "tls.cert: file not found: /nope.pem",
                     'mailbox[1].addresses[0]: invalid address "foo"']:
        assert expected in r.stderr, f"missing {expected!r} in:\n{r.stderr}"


def test_check_config_toml_syntax_error(mailgate_bin, tmp_path):
    cfg = tmp_path / "syntax.toml"
    cfg.write_text("[server\nhostname = \n")
    r = run(mailgate_bin, "check-config", "--config", str(cfg))
    assert r.returncode != 0
    assert r.stderr.strip(), "a TOML syntax error must be explained on stderr"


def test_check_config_missing_file(mailgate_bin, tmp_path):
    r = run(mailgate_bin, "check-config", "--config", str(tmp_path / "does-not-exist.toml"))
    assert r.returncode != 0
    assert "does-not-exist.toml" in r.stderr


def test_address_in_two_mailboxes_is_refused(mailgate_bin, tmp_path):
    """An address belongs to one mailbox."""
    g = Gateway(mailgate_bin, tmp_path / "gw", {
        "mailbox": [
            {"name": "support", "addresses": ["support@example.test"], "queue": "Support", "default": True},
            {"name": "sales", "addresses": ["support@example.test"], "queue": "Sales", "default": False},
        ]})
    r = run(mailgate_bin, "check-config", "--config", str(g.config_path))
    assert r.returncode != 0, "the same address in two mailboxes must be a config error"
    assert "support@example.test" in r.stderr


def test_serve_refuses_broken_config(mailgate_bin, tmp_path):
    cfg = tmp_path / "broken.toml"
    cfg.write_text(BROKEN.format(tmp=tmp_path))
    r = run(mailgate_bin, "serve", "--config", str(cfg), timeout=60)
    assert r.returncode != 0
    assert "smtp.lisen" in r.stderr


def test_unknown_key_in_mailbox_table(mailgate_bin, tmp_path):
    g = Gateway(mailgate_bin, tmp_path / "gw")
    cfg = dict(g.config)
    cfg["mailbox"] = [dict(cfg["mailbox"][0], colour="blue")]
    path = tmp_path / "unknown.toml"
    path.write_text(to_toml(cfg))
    r = run(mailgate_bin, "check-config", "--config", str(path))
    assert r.returncode != 0
    assert "mailbox[0].colour" in r.stderr, r.stderr
