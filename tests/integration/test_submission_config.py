"""Submission accounts in the config, and `mailgate hash-password`.

The hash the binary prints is checked by the reference argon2 C library
(libargon2, through ctypes): it verifies the password it was made from and
no other. check-config accepts it in a `[[submission.account]]`, inline or
in a private file; it refuses a plain `password`, accounts under
`[[relay.account]]`, a broken hash, a hash file others can read, an unknown
mailbox and a duplicate user, naming the key each time and never printing
a hash.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import subprocess

import pytest

from dovecot import run_command

PASSWORD = "correct horse battery staple"
PHC_RE = re.compile(r"^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$")


def hash_password(binary: str, stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "hash-password", "--stdin"], input=stdin, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def phc(mailgate_bin) -> str:
    r = hash_password(mailgate_bin, PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def libargon2():
    name = ctypes.util.find_library("argon2") or "libargon2.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        pytest.fail("libargon2 (Debian package libargon2-1) is needed: scripts/install-test-deps.sh",
                    pytrace=False)
    lib.argon2id_verify.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.argon2id_verify.restype = ctypes.c_int
    return lib


def reference_verify(phc: str, password: str) -> bool:
    pw = password.encode()
    return libargon2().argon2id_verify(phc.encode(), pw, len(pw)) == 0  # ARGON2_OK


def account(user="crm", extra="", **keys) -> str:
    lines = ["[[submission.account]]", f'user = "{user}"']
    lines += [f"{k} = {v}" for k, v in keys.items()]
    if "mailboxes" not in keys:
        lines.append('mailboxes = ["support"]')
    return "\n".join(lines) + "\n" + extra


def check(make_gateway, *accounts: str, section: str = "") -> tuple[int, str, object]:
    g = make_gateway(start=False)
    text = g.config_path.read_text()
    text += '\n[submission]\nlisten = "127.0.0.1:0"\nlisten_tls = ""\n' + section + "\n"
    text += "\n".join(accounts)
    g.config_path.write_text(text)
    r = run_command(g, "check-config")
    return r.returncode, r.stdout + r.stderr, g


def q(s: str) -> str:
    return '"' + s + '"'


def test_hash_password_prints_an_argon2id_hash_the_reference_library_verifies(mailgate_bin, phc):
    assert PHC_RE.match(phc), phc
    assert reference_verify(phc, PASSWORD)
    assert not reference_verify(phc, PASSWORD + "!")
    assert not reference_verify(phc, "")
    # A fresh random salt each time.
    again = hash_password(mailgate_bin, PASSWORD + "\r\n").stdout.strip()
    assert again != phc and PHC_RE.match(again)
    assert reference_verify(again, PASSWORD), "the CRLF of the line is not part of the password"


def test_hash_password_refuses_nothing_and_never_prints_the_password(mailgate_bin):
    for empty in ("", "\n", "\r\n"):
        r = hash_password(mailgate_bin, empty)
        assert r.returncode == 1, (empty, r.stdout, r.stderr)
        assert r.stdout == "" and "empty" in r.stderr, r.stderr
    r = hash_password(mailgate_bin, "pw with spaces\n")
    assert r.returncode == 0 and "pw with spaces" not in r.stdout + r.stderr
    assert reference_verify(r.stdout.strip(), "pw with spaces")
    # Without --stdin it reads the terminal; with none it says how to do without.
    r = subprocess.run([mailgate_bin, "hash-password"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60, start_new_session=True)
    assert r.returncode == 1 and r.stdout == "", r
    assert "--stdin" in r.stderr, r.stderr


def test_check_config_accepts_the_hash_inline_and_in_a_private_file(make_gateway, phc, tmp_path):
    code, out, _ = check(make_gateway, account(password_hash=q(phc),
                                               networks='["10.0.0.0/8", "::1"]',
                                               reply_to=q("force")))
    assert code == 0, out
    assert "config OK" in out and phc not in out
    path = tmp_path / "crm.hash"
    path.write_text(phc + "\n")
    path.chmod(0o600)
    code, out, _ = check(make_gateway, account(password_hash_file=q(str(path)),
                                               mailboxes='["support", "sales"]'))
    assert code == 0, out


def test_a_hash_file_others_can_read_is_refused(make_gateway, phc, tmp_path):
    path = tmp_path / "crm.hash"
    path.write_text(phc + "\n")
    path.chmod(0o644)
    code, out, g = check(make_gateway, account(password_hash_file=q(str(path))))
    assert code == 2, out
    assert "submission.account[0].password_hash_file:" in out and "chmod 600" in out, out
    assert phc not in out, out
    # serve refuses the same config before listening on anything.
    r = subprocess.run([g.binary, "serve", "--config", str(g.config_path)], capture_output=True,
                       text=True, timeout=60, cwd=g.workdir, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r
    assert "submission.account[0].password_hash_file" in r.stderr and phc not in r.stderr


def test_a_plain_password_is_refused_and_not_echoed(make_gateway):
    pasted = "Hunter2 pasted!"
    code, out, g = check(make_gateway, account(password=q(pasted)))
    assert code == 2, out
    assert "submission.account[0].password: only password hashes are accepted" in out, out
    assert "mailgate hash-password" in out, out
    assert pasted not in out and pasted in g.config_path.read_text()


def test_relay_account_is_pointed_at_submission_account(make_gateway, phc):
    g = make_gateway(start=False)
    text = g.config_path.read_text()
    text += ('\n[relay]\nhost = "smtp.example.test"\n'
             f'[[relay.account]]\nuser = "crm"\npassword_hash = "{phc}"\nmailboxes = ["support"]\n')
    g.config_path.write_text(text)
    r = run_command(g, "check-config")
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "relay.account: submission accounts are [[submission.account]]" in out, out
    assert "[relay] is the upstream relay" in out, out
    assert phc not in out


@pytest.mark.parametrize("bad, expected", [
    ("not-a-hash", "not a PHC string"),
    ("$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWY",
     "not an argon2id hash"),
    ("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0", "no salt or no hash"),
])
def test_a_bad_hash_names_the_account_never_the_hash(make_gateway, bad, expected):
    code, out, _ = check(make_gateway, account(password_hash=q(PHC_OK)),
                         account(user="shop", password_hash=q(bad)))
    assert code == 2, out
    assert f"submission.account[1].password_hash: {expected}" in out or (
        "submission.account[1].password_hash:" in out and expected in out), out
    assert bad not in out, out


def test_mailboxes_users_and_networks_are_checked(make_gateway, phc):
    h = q(phc)
    code, out, _ = check(
        make_gateway,
        account(password_hash=h, mailboxes='["support", "billing"]'),
        account(user="CRM", password_hash=h),
        account(user="mon", password_hash=h, mailboxes="[]", networks='["10.1.2.3/8"]'),
        section='auth_failures_per_ip = 0\nauth_failure_window = "soon"\n',
    )
    assert code == 2, out
    for expected in (
        'submission.account[0].mailboxes[1]: no [[mailbox]] is named "billing"',
        'submission.account[1].user: duplicate user "CRM"',
        "submission.account[2].mailboxes: at least one",
        "submission.account[2].networks[0]: \"10.1.2.3/8\" has host bits set",
        "submission.auth_failures_per_ip: must be a positive number",
        "submission.auth_failure_window: invalid duration",
    ):
        assert expected in out, (expected, out)
    assert phc not in out


# A valid hash for the accounts not under test (of "correct horse").
PHC_OK = "$argon2id$v=19$m=19456,t=2,p=1$qaBRHC7qseAUyrHgV98T8A$aIzzAws9p0lnPm4IiOV3WVrA7G7WMuRmBGp3XF3/QWA"


def test_the_documented_hash_placeholder_is_not_accepted(make_gateway):
    """The example in config/mailgate.toml has a placeholder, not a usable hash."""
    code, out, _ = check(make_gateway, account(password_hash=q("$argon2id$v=19$m=19456,t=2,p=1$...$...")))
    assert code == 2, out
    assert "submission.account[0].password_hash:" in out, out
