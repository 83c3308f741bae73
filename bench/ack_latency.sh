#!/usr/bin/env bash
# Ack latency benchmark (goal 2 of issue 12): end-of-DATA -> 250 of mailgate
# against Postfix's smtp-sink at half of mailgate's peak rate, plus one fsync
# measured on the data dir's disk. The clients are bench/ack_latency.py.
#
#   bench/ack_latency.sh                        # 4 and 16 clients
#   CLIENTS=1,4,16 MSGS=3000 bench/ack_latency.sh
#   MAILGATE_BIN=target/release/mailgate bench/ack_latency.sh   # skip the build
#
# Needs smtp-sink (postfix, scripts/install-test-deps.sh), python3, cargo.
# Talks to 127.0.0.1 only; the temp dir is removed on exit (KEEP=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
CLIENTS=${CLIENTS:-4,16}
MSGS=${MSGS:-2000}
MSG_SIZE=${MSG_SIZE:-10240}
KEEP=${KEEP:-0}
SMTP_SINK=${SMTP_SINK:-/usr/sbin/smtp-sink}
RCPT=support@example.test

log() { printf '[ack] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ -x "$SMTP_SINK" ] || die "$SMTP_SINK missing: run scripts/install-test-deps.sh"

WORK=$(mktemp -d /tmp/mailgate-ack.XXXXXX)
chmod 755 "$WORK"
MG_PID=""; SINK_PID=""
cleanup() {
    local rc=$?
    set +e
    for p in $MG_PID $SINK_PID; do
        kill -TERM "$p" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_220() { # port
    python3 - "$1" <<'PY'
import socket, sys, time
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
            s.settimeout(5)
            if s.recv(512).startswith(b"220"):
                s.sendall(b"QUIT\r\n"); sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
}

if [ -n "${MAILGATE_BIN:-}" ]; then
    MG_BIN=$MAILGATE_BIN
else
    log "building mailgate (release; set MAILGATE_BIN to skip)"
    cargo build --release --locked >"$WORK/cargo-build.log" 2>&1 || { tail -30 "$WORK/cargo-build.log" >&2; die "release build failed"; }
    MG_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/mailgate
fi
[ -x "$MG_BIN" ] || die "$MG_BIN is not executable"

SINK_PORT=$(free_port)
sink_user=()
[ "$(id -u)" -eq 0 ] && sink_user=(-u nobody)
"$SMTP_SINK" "${sink_user[@]}" "127.0.0.1:$SINK_PORT" 1024 >"$WORK/smtp-sink.log" 2>&1 &
SINK_PID=$!
wait_220 "$SINK_PORT" || die "smtp-sink did not answer"

MG_PORT=$(free_port); MG_HTTP=$(free_port); TLS_PORT=$(free_port)
MG_DIR=$WORK/mailgate
mkdir -p "$MG_DIR/data" "$MG_DIR/certs"
cat >"$MG_DIR/mailgate.toml" <<EOF
[server]
hostname = "localhost"
data_dir = "$MG_DIR/data"
domains = ["example.test"]

[smtp]
listen = ["127.0.0.1:$MG_PORT"]
listen_tls = ["127.0.0.1:$TLS_PORT"]
max_connections = 512
max_connections_per_ip = 512
connections_per_minute_per_ip = 1000000

[tls]
dev_cert_dir = "$MG_DIR/certs"

[http]
listen = "127.0.0.1:$MG_HTTP"
api_token_env = "MAILGATE_BENCH_TOKEN"

[[mailbox]]
name = "support"
addresses = ["$RCPT"]
queue = "Support"
default = true
EOF
env -u MAILGATE_BENCH_TOKEN RUST_LOG="${RUST_LOG:-warn}" \
    "$MG_BIN" serve --config "$MG_DIR/mailgate.toml" >"$MG_DIR/stdout.log" 2>"$MG_DIR/stderr.log" &
MG_PID=$!
wait_220 "$MG_PORT" || { tail -20 "$MG_DIR/stderr.log" >&2; die "mailgate did not start"; }
log "mailgate on 127.0.0.1:$MG_PORT, smtp-sink on 127.0.0.1:$SINK_PORT"

python3 bench/ack_latency.py --mailgate-port "$MG_PORT" --sink-port "$SINK_PORT" \
    --data-dir "$MG_DIR/data" --clients "$CLIENTS" --msgs "$MSGS" --size "$MSG_SIZE"
