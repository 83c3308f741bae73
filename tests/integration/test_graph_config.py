"""check-config through the binary for a Microsoft Graph upstream: no host
or password needed, and every Graph-specific mistake named by its key."""

import subprocess

GOOD = """\
[server]
domains = ["example.test"]
data_dir = "{tmp}/data"

[[mailbox]]
name = "support"
addresses = ["support@example.test"]

[mailbox.oauth2]
provider = "microsoft"
tenant = "contoso"
client_id = "client-id"
client_secret_env = "GRAPH_CLIENT_SECRET"

[mailbox.upstream]
protocol = "graph"
user = "support@contoso.test"
folder = "Inbox/Support"
after_import = "move"
processed_folder = "archive"
"""

BAD = """\
[server]
domains = ["example.test"]
data_dir = "{tmp}/data"

[[mailbox]]
name = "support"
addresses = ["support@example.test"]

[mailbox.upstream]
protocol = "graph"
user = "support@contoso.test"
api_base = "http://graph.example.test/v1.0"
after_import = "delete"
rejected_category = " "
"""


def check(binary, path):
    return subprocess.run([binary, "check-config", "--config", str(path)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_a_graph_upstream_needs_no_host_or_password(mailgate_bin, tmp_path):
    cfg = tmp_path / "graph.toml"
    cfg.write_text(GOOD.format(tmp=tmp_path))
    r = check(mailgate_bin, cfg)
    assert r.returncode == 0, r.stderr
    assert "config OK" in r.stdout


def test_graph_mistakes_are_named_by_key(mailgate_bin, tmp_path):
    cfg = tmp_path / "graph.toml"
    cfg.write_text(BAD.format(tmp=tmp_path))
    r = check(mailgate_bin, cfg)
    assert r.returncode == 2, r.stdout
    lines = r.stderr.splitlines()
    for key, fragment in [("mailbox[0].upstream.api_base", "https://"),
                          ("mailbox[0].upstream.after_import", '"delete"'),
                          ("mailbox[0].upstream.rejected_category", "non-empty")]:
        assert any(key in line and fragment in line for line in lines), (key, r.stderr)
    assert not any("upstream.host" in line for line in lines), r.stderr
