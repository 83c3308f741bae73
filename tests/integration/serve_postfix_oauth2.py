"""A private Postfix submission relay whose SASL (an auth-only Dovecot) takes
XOAUTH2, each token checked at an RFC 7662 introspection fake, as a program
for the Rust tests (tests/smtp_xoauth2_postfix.rs): both ends real, the
same harness as the pytest suite (postfix.py, fakes/introspection.py).

    python3 serve_postfix_oauth2.py --token USER=TOKEN [--token ...]

prints one JSON line (submission_port, smtps_port, ca_file, maildirs: address
-> Maildir path), then `CALL <token> <active>` for every introspection call,
and stops everything when stdin closes.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))

from introspection import Introspection  # noqa: E402
from postfix import Postfix  # noqa: E402


def main(argv: list[str]) -> int:
    lock = threading.Lock()

    def report(token: str, active: bool):
        with lock:
            print(f"CALL {token} {'true' if active else 'false'}", flush=True)

    fake = Introspection(on_call=report)
    args = iter(argv)
    for arg in args:
        if arg != "--token":
            print(f"unknown argument {arg!r}", file=sys.stderr)
            return 2
        user, _, token = next(args).partition("=")
        fake.issue(user, token)
    fake.start()
    relay = Postfix(introspection_url=fake.url)
    try:
        relay.start()
        with lock:
            print(json.dumps({
                "submission_port": relay.submission_port,
                "smtps_port": relay.smtps_port,
                "ca_file": relay.ca_file,
                "maildirs": {a: str(relay._maildir(a)) for a in relay.mailboxes},
                "auth_log": str(relay.root / "dovecot.log"),
                "postfix_log": str(relay.root / "log" / "postfix.log"),
            }), flush=True)
        sys.stdin.read()
    finally:
        relay.close()
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
