"""check-config on the sending keys: each problem names its key, and a
secret pasted where a variable name belongs is never echoed."""
from dovecot import run_command


def problems(make_gateway, overrides):
    g = make_gateway(overrides, start=False)
    r = run_command(g, "check-config")
    return r.returncode, r.stdout + r.stderr


def test_bad_limits_name_their_keys(make_gateway):
    code, out = problems(make_gateway, {
        "outbound": {"messages_per_minute": -5, "bytes_per_5_minutes": "huge", "max_age": "soon"},
        "mailbox": [{"name": "support", "addresses": ["support@example.test"], "default": True,
                     "send_limits": {"recipients_per_day": -1}}],
    })
    assert code == 2, out
    for key in ("outbound.messages_per_minute", "outbound.bytes_per_5_minutes", "outbound.max_age",
                "mailbox[0].send_limits.recipients_per_day"):
        assert key in out, (key, out)


def test_a_pasted_token_key_is_not_echoed(make_gateway):
    secret = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0-x"
    code, out = problems(make_gateway, {"tickets": {"reply_token_key_env": secret}})
    assert code == 2
    assert "tickets.reply_token_key_env" in out and secret not in out, out


def test_zero_turns_limits_off_and_the_defaults_are_valid(make_gateway):
    code, out = problems(make_gateway, {"outbound": {"messages_per_minute": 0,
                                                     "bytes_per_5_minutes": 0,
                                                     "recipients_per_day": 0}})
    assert code == 0, out


def test_relay_oauth2_names_what_is_missing_or_contradictory(make_gateway):
    pasted = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.pasted-token"
    code, out = problems(make_gateway, {"relay": {"host": "smtp.example.test", "auth": "oauth2",
                                                  "password_env": "RELAY_PW"}})
    assert code == 2, out
    for expected in ('relay.password_env: relay.auth = "oauth2" logs in with an access token',
                     "relay.user: missing", "relay.oauth2_mailbox: missing"):
        assert expected in out, (expected, out)
    code, out = problems(make_gateway, {"relay": {"host": "smtp.example.test", "auth": "oauth2",
                                                  "user": "support@example.test",
                                                  "oauth2_mailbox": "nope"}})
    assert code == 2 and 'relay.oauth2_mailbox: no [[mailbox]] is named "nope"' in out, out
    code, out = problems(make_gateway, {"relay": {"host": "smtp.example.test", "auth": pasted}})
    assert code == 2 and "relay.auth: must be" in out and pasted not in out, out
