#!/usr/bin/env bash
# Storage bench: redb bytes per stored message against its raw size (N x 2 KB).
#
#   bench/compact_bench.sh
#   N=20000 SIZE=2048 THREADS=4 bench/compact_bench.sh
#   MAILGATE_BIN=target/release/mailgate bench/compact_bench.sh   # skip the build
#
# Knobs (see bench/compact_bench.py): N, SIZE, THREADS, ACKS (0: acknowledgements off).
# Talks to 127.0.0.1 only; exits 1 when a message was not stored.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MAILGATE_BIN:-}" ]; then
    cargo build --release --quiet
    MAILGATE_BIN="${CARGO_TARGET_DIR:-target}/release/mailgate"
fi
export MAILGATE_BIN
exec python3 bench/compact_bench.py
