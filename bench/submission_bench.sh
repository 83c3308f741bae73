#!/usr/bin/env bash
# Submission benchmark: authenticated submissions per second over STARTTLS,
# mailgate's submission endpoint vs Postfix's own submission service
# configured the same way, same machine, same run (bench/submission_bench.py
# does the work; see bench/README.md).
#
#   bench/submission_bench.sh                 # 4 and 16 clients, 10 per connection and 1 per connection
#   REPEAT=3 bench/submission_bench.sh        # medians of 3 rounds
#   MSGS=1000 SINGLE_MSGS=400 PER_CONN=20 CLIENTS=4,16,32 bench/submission_bench.sh
#   MAILGATE_BIN=target/release/mailgate bench/submission_bench.sh   # skip the build
#
# Knobs: MSGS (400: messages per run with PER_CONN per connection),
# SINGLE_MSGS (200: messages per run, one per connection), PER_CONN (10),
# CLIENTS (4,16: client processes), SIZE (10240: message bytes), REPEAT (1),
# KEEP (0: keep the temp dir), MAILGATE_BIN.
#
# Needs root (Postfix runs its own master), the packages from
# scripts/install-test-deps.sh (Postfix, Dovecot, smtp-sink) and cargo.
# Talks to 127.0.0.1 only; starts and stops its own Postfix, Dovecot,
# smtp-sinks and mailgate. Exits 1 when a message was not accepted.
set -euo pipefail

cd "$(dirname "$0")/.."

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (a private Postfix master needs it)"
[ -x /usr/sbin/smtp-sink ] || die "/usr/sbin/smtp-sink missing: run scripts/install-test-deps.sh"
PATH=$PATH:/usr/sbin:/sbin

if [ -n "${MAILGATE_BIN:-}" ]; then
    MG_BIN=$MAILGATE_BIN
else
    log "building mailgate (release; set MAILGATE_BIN to skip)"
    build_log=$(mktemp)
    cargo build --release --locked >"$build_log" 2>&1 \
        || { tail -30 "$build_log" >&2; rm -f "$build_log"; die "mailgate release build failed"; }
    rm -f "$build_log"
    MG_BIN=${CARGO_TARGET_DIR:-$(pwd)/target}/release/mailgate
fi
[ -x "$MG_BIN" ] || die "no mailgate binary at $MG_BIN"

exec python3 bench/submission_bench.py --mailgate "$MG_BIN" \
    --msgs "${MSGS:-400}" --single-msgs "${SINGLE_MSGS:-200}" --per-conn "${PER_CONN:-10}" \
    --clients "${CLIENTS:-4,16}" --size "${SIZE:-10240}" --repeat "${REPEAT:-1}"
