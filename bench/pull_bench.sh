#!/usr/bin/env bash
# Upstream pull bench: N 2 KB messages in a private Dovecot's INBOX, fetched
# by imaplib (the peer's ceiling) and then pulled by mailgate; msg/s of both
# and the ratio (issue 12, goal 6). Needs root (Dovecot's mail user).
#
#   bench/pull_bench.sh                   # N=5000
#   N=20000 MAILGATE_BIN=target/release/mailgate bench/pull_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MAILGATE_BIN:-}" ]; then
    cargo build --release --quiet
    MAILGATE_BIN="${CARGO_TARGET_DIR:-target}/release/mailgate"
fi
export MAILGATE_BIN
exec python3 bench/pull_bench.py
