#!/usr/bin/env bash
# Memory bench: idle RSS, one 45 MB message, four concurrent 45 MB messages
# (peak VmHWM and the RSS settled 10 s later), read from /proc/PID/status.
#
#   bench/memory_bench.sh
#   SIZE_MB=45 CONCURRENT=4 KIND=text bench/memory_bench.sh
#   MAILGATE_BIN=target/release/mailgate bench/memory_bench.sh   # skip the build
#
# Knobs (see bench/memory_bench.py): SIZE_MB, CONCURRENT, SETTLE, KIND,
# CONFIG_EXTRA. Talks to 127.0.0.1 only; exits 1 when a message did not come
# back intact through the API.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MAILGATE_BIN:-}" ]; then
    cargo build --release --quiet
    MAILGATE_BIN="${CARGO_TARGET_DIR:-target}/release/mailgate"
fi
export MAILGATE_BIN
exec python3 bench/memory_bench.py
