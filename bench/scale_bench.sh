#!/usr/bin/env bash
# Flat at scale (issue 12, goal 5): one mailgate store grown to N ticket
# messages through SMTP; ingest rate of the first and last 10k, and the
# latency of every list endpoint and of a threaded reply at ~10^3 and at N.
#
#   bench/scale_bench.sh                          # N=1000000 (~16 minutes on 2 cores)
#   N=200000 bench/scale_bench.sh                 # the quicker run
#   MAILGATE_BIN=target/release/mailgate N=50000 bench/scale_bench.sh
#
# Knobs: N (1000000: tickets at the end), BATCH (10000: messages per
# smtp-source run, the unit of the ingest figures), SESSIONS (8: smtp-source
# sessions), MSG_SIZE (2048), REQUESTS (200: per latency figure), SMALL (1000:
# tickets at the first measurement), KEEP (0: keep the temp dir),
# MAILGATE_BIN (skip the release build). Needs smtp-source (Postfix, from
# scripts/install-test-deps.sh), python3 and cargo; talks to 127.0.0.1 only.
# Disk: about 2.6 KB of redb file per message (2.5 GB at 10^6).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MAILGATE_BIN:-}" ]; then
    echo "[scale] building mailgate (release; set MAILGATE_BIN to skip)" >&2
    cargo build --release --locked >&2
    MAILGATE_BIN=${CARGO_TARGET_DIR:-target}/release/mailgate
fi
export MAILGATE_BIN
exec python3 bench/scale_bench.py
