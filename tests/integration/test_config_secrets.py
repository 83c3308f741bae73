"""A password pasted into the key that should only *name* its source
(password_env, password_file, http.api_token_env) is never printed back:
not by check-config, not by test-connection / sync when the source is
missing. The key is named and what is wrong is said."""

from __future__ import annotations

import pytest

from dovecot import gateway_with, run_command

PASTED = "Pasted s3cret!"      # not a variable name: check-config refuses it
PASTED_NAME = "PastedS3cretPw"  # a valid variable name, set nowhere
PASTED_NUMBER = 97531864        # a mistyped value: toml itself would quote it


def fake_upstream(**over) -> dict:
    u = {"protocol": "imap", "host": "localhost", "port": 1, "security": "tls", "user": "u"}
    u.update(over)
    return u


def check_config(make_gateway, up: dict, extra: dict | None = None):
    g = gateway_with(make_gateway, up, password=None, start=False, extra=extra)
    return g, run_command(g, "check-config")


@pytest.mark.parametrize("over, key, pasted", [
    ({"password_env": PASTED}, "mailbox[0].upstream.password_env", PASTED),
    ({"password_env": PASTED_NUMBER}, "line ", str(PASTED_NUMBER)),
    ({"password_file": PASTED_NUMBER}, "line ", str(PASTED_NUMBER)),
])
def test_check_config_names_the_key_not_the_pasted_value(make_gateway, over, key, pasted):
    g, r = check_config(make_gateway, fake_upstream(**over))
    out = r.stdout + r.stderr
    assert r.returncode == 2, f"check-config accepted {over}:\n{out}"
    assert key in r.stderr, out
    assert "not shown" in r.stderr, out
    assert pasted not in out, f"check-config printed the pasted value:\n{out}"
    assert pasted in g.config_path.read_text()  # it really was in the config


def test_check_config_hides_a_pasted_api_token(make_gateway):
    g, r = check_config(make_gateway, fake_upstream(password_env="PW"),
                        extra={"http": {"api_token_env": PASTED}})
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "http.api_token_env" in r.stderr and "not shown" in r.stderr, out
    assert PASTED not in out, out


@pytest.mark.parametrize("over", [{"password_env": PASTED_NAME},
                                  {"password_file": PASTED_NAME}])
def test_a_source_that_names_nothing_is_not_printed(make_gateway, over):
    """A valid-looking name that names no variable / no file may be the
    password: check-config cannot tell, the commands say what is missing
    without the value."""
    g, r = check_config(make_gateway, fake_upstream(**over))
    assert r.returncode == 0, r.stderr
    for cmd in ("test-connection", "sync"):
        r = run_command(g, cmd, "support", env={PASTED_NAME: None})
        out = r.stdout + r.stderr
        assert r.returncode == 1, f"{cmd}: {r.returncode}\n{out}"
        key = next(iter(over))
        assert f"upstream.{key}" in out and "not shown" in out, out
        assert PASTED_NAME not in out, f"{cmd} printed the pasted value:\n{out}"
