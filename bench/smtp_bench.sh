#!/usr/bin/env bash
# SMTP ingest benchmark: mailgate against a private Postfix MX (virtual(8) ->
# Maildir) and against Postfix's smtp-sink (no storage: the ceiling), all
# driven by Postfix's smtp-source in the same run.
#
#   bench/smtp_bench.sh                 # 2,000 x 10 KB at 1, 4, 16 and 64 sessions
#   MSGS=500 SESSIONS="4" bench/smtp_bench.sh
#   POSTFIX_ONLY=1 bench/smtp_bench.sh  # skip mailgate (e.g. while it is broken)
#
# Environment knobs: MSGS (2000), MSG_SIZE (10240), SESSIONS ("1 4 16 64"),
# REPEAT (1: rounds per session count), POSTFIX_ONLY (0), MAILGATE_ONLY (0),
# KEEP (0: keep the temp dir), MAILGATE_BIN (skip the release build and use it).
#
# Needs root (Postfix runs its own master), the packages from
# scripts/install-test-deps.sh, and cargo. Talks to 127.0.0.1 only.
# Prints, for each session count: msgs/s of Postfix, smtp-sink and mailgate, the
# ratios mailgate/postfix and mailgate/smtp-sink, and from mailgate's /metrics
# the mean group-commit batch size and commit time of that run. Exits non-zero
# when a run lost or refused messages.
set -euo pipefail
ACKS_ACTIVE=$([ "${ACKS:-1}" = 0 ] && echo false || echo true)

cd "$(dirname "$0")/.."
REPO=$(pwd)

MSGS=${MSGS:-2000}
MSG_SIZE=${MSG_SIZE:-10240}
SESSIONS=${SESSIONS:-"1 4 16 64"}
REPEAT=${REPEAT:-1}
POSTFIX_ONLY=${POSTFIX_ONLY:-0}
MAILGATE_ONLY=${MAILGATE_ONLY:-0}
KEEP=${KEEP:-0}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-300}
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
SMTP_SINK=${SMTP_SINK:-/usr/sbin/smtp-sink}
RCPT=support@example.test
SENDER=bench@client.test

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (a private Postfix master needs it)"
[ -x "$SMTP_SOURCE" ] || die "$SMTP_SOURCE missing: run scripts/install-test-deps.sh"
[ -x "$SMTP_SINK" ] || die "$SMTP_SINK missing: run scripts/install-test-deps.sh"
command -v postfix >/dev/null || [ -x /usr/sbin/postfix ] || die "postfix missing: run scripts/install-test-deps.sh"
PATH=$PATH:/usr/sbin:/sbin

WORK=$(mktemp -d /tmp/mailgate-bench.XXXXXX)
chmod 755 "$WORK"
PF_CONF=$WORK/postfix/etc
PF_QUEUE=$WORK/postfix/queue
PF_DATA=$WORK/postfix/data
PF_LOGDIR=$WORK/postfix/log
MAILDIR_BASE=$WORK/maildir
MG_DIR=$WORK/mailgate
MG_PID=""
SINK_PID=""
PF_STARTED=0

cleanup() {
    local rc=$?
    set +e
    if [ -n "$MG_PID" ] && kill -0 "$MG_PID" 2>/dev/null; then
        kill -TERM "$MG_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$MG_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$MG_PID" 2>/dev/null
        wait "$MG_PID" 2>/dev/null
    fi
    if [ -n "$SINK_PID" ]; then
        kill -TERM "$SINK_PID" 2>/dev/null
        wait "$SINK_PID" 2>/dev/null
    fi
    if [ "$PF_STARTED" = 1 ]; then
        postfix -c "$PF_CONF" stop >/dev/null 2>&1
        local mpid
        mpid=$(cat "$PF_QUEUE/pid/master.pid" 2>/dev/null | tr -d ' ')
        if [ -n "$mpid" ]; then
            for _ in $(seq 50); do kill -0 "$mpid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$mpid" 2>/dev/null
        fi
    fi
    if [ "$KEEP" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

now() { date +%s.%N; }
# rate COUNT SECONDS -> msgs/s with one decimal
rate() { awk -v n="$1" -v t="$2" 'BEGIN { if (t <= 0) print "inf"; else printf "%.1f", n / t }'; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

wait_port() { # host port timeout_s
    python3 - "$1" "$2" "$3" <<'PY'
import socket, sys, time
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.settimeout(5)
            if s.recv(512).startswith(b"220"):
                s.sendall(b"QUIT\r\n")
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
}

# ---------------------------------------------------------------- Postfix ---
PF_PORT=""
setup_postfix() {
    PF_PORT=$(free_port)
    mkdir -p "$PF_CONF" "$PF_QUEUE" "$PF_DATA" "$PF_LOGDIR" "$MAILDIR_BASE"
    chown postfix:postfix "$PF_DATA"
    chown nobody:nogroup "$MAILDIR_BASE"
    local uid gid
    uid=$(id -u nobody); gid=$(id -g nobody)
    cat >"$PF_CONF/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF_QUEUE
data_directory = $PF_DATA
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-bench.localhost
mydomain = localhost
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_peername_lookup = no
biff = no
# Nothing may leave the host.
default_transport = error:bench instance delivers locally only
relay_transport = error:bench instance delivers locally only
local_transport = error:no local delivery
# virtual(8) to Maildirs
virtual_mailbox_domains = example.test
virtual_mailbox_maps = texthash:$PF_CONF/vmailbox
virtual_mailbox_base = $MAILDIR_BASE
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_minimum_uid = 100
message_size_limit = 52428800
virtual_mailbox_limit = 0
# Logging to a file (maillog_file must live under maillog_file_prefixes).
maillog_file_prefixes = $PF_LOGDIR
maillog_file = $PF_LOGDIR/postfix.log
EOF
    printf '%s support/\n' "$RCPT" >"$PF_CONF/vmailbox"
    cat >"$PF_CONF/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - - smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
    postfix -c "$PF_CONF" check >"$WORK/postfix-check.log" 2>&1 \
        || { cat "$WORK/postfix-check.log" >&2; die "postfix check failed"; }
    postfix -c "$PF_CONF" start >"$WORK/postfix-start.log" 2>&1 \
        || { cat "$WORK/postfix-start.log" >&2; die "postfix start failed"; }
    PF_STARTED=1
    wait_port 127.0.0.1 "$PF_PORT" 30 || die "postfix did not answer on 127.0.0.1:$PF_PORT (see $PF_LOGDIR/postfix.log)"
    log "postfix $(postconf -c "$PF_CONF" -h mail_version) listening on 127.0.0.1:$PF_PORT"
}

pf_delivered() { { find "$MAILDIR_BASE/support/new" -type f 2>/dev/null || true; } | wc -l; }
pf_queued() {
    { find "$PF_QUEUE/incoming" "$PF_QUEUE/active" "$PF_QUEUE/deferred" \
        "$PF_QUEUE/hold" "$PF_QUEUE/maildrop" -type f 2>/dev/null || true; } | wc -l
}

# --------------------------------------------------------------- smtp-sink ---
# Postfix's test server: answers every command at once and stores nothing,
# so its rate is what smtp-source and the loopback allow (the ceiling).
SINK_PORT=""
start_sink() {
    SINK_PORT=$(free_port)
    "$SMTP_SINK" -u nobody "127.0.0.1:$SINK_PORT" 1024 >"$WORK/smtp-sink.log" 2>&1 &
    SINK_PID=$!
    wait_port 127.0.0.1 "$SINK_PORT" 10 || die "smtp-sink did not answer on 127.0.0.1:$SINK_PORT"
    log "smtp-sink listening on 127.0.0.1:$SINK_PORT"
}

# ---------------------------------------------------------------- mailgate ---
MG_PORT=""; MG_HTTP=""; MG_BIN=""
build_mailgate() {
    if [ -n "${MAILGATE_BIN:-}" ]; then
        MG_BIN=$MAILGATE_BIN
        [ -x "$MG_BIN" ] || { log "MAILGATE_BIN=$MG_BIN is not executable"; return 1; }
        return 0
    fi
    log "building mailgate (release; set MAILGATE_BIN to skip)"
    local b0
    b0=$(date +%s)
    if ! cargo build --release --locked >"$WORK/cargo-build.log" 2>&1; then
        tail -30 "$WORK/cargo-build.log" >&2
        log "mailgate release build failed"
        return 1
    fi
    log "build took $(( $(date +%s) - b0 ))s"
    local target_dir
    target_dir=${CARGO_TARGET_DIR:-$REPO/target}
    MG_BIN=$target_dir/release/mailgate
    [ -x "$MG_BIN" ]
}

start_mailgate() {
    MG_PORT=$(free_port); MG_HTTP=$(free_port)
    local tls_port
    tls_port=$(free_port)
    mkdir -p "$MG_DIR/data" "$MG_DIR/certs"
    cat >"$MG_DIR/mailgate.toml" <<EOF
[server]
hostname = "localhost"
data_dir = "$MG_DIR/data"
domains = ["example.test"]

[smtp]
listen = ["127.0.0.1:$MG_PORT"]
listen_tls = ["127.0.0.1:$tls_port"]
bare_lf = "normalize"
max_connections = 512
max_connections_per_ip = 512
# smtp-source opens one connection per message: lift the per-IP rate limit.
connections_per_minute_per_ip = 1000000

[limits]
max_message_size = "50MB"

[tls]
dev_cert_dir = "$MG_DIR/certs"

[http]
listen = "127.0.0.1:$MG_HTTP"
api_token_env = "MAILGATE_BENCH_TOKEN"

[tickets]
tag = "[MG#{number}]"
first_number = 1000

[[mailbox]]
name = "support"
addresses = ["$RCPT"]
queue = "Support"
default = true

# ACKS=0: no acknowledgement per new ticket (each bench message opens one;
# by default each also composes and queues its acknowledgement).
[mailbox.notify.acknowledgement]
active = ${ACKS_ACTIVE}
EOF
    "$MG_BIN" check-config --config "$MG_DIR/mailgate.toml" >&2 || { log "check-config refused the bench config"; return 1; }
    env -u MAILGATE_BENCH_TOKEN RUST_LOG="${RUST_LOG:-info}" \
        "$MG_BIN" serve --config "$MG_DIR/mailgate.toml" >"$MG_DIR/stdout.log" 2>"$MG_DIR/stderr.log" &
    MG_PID=$!
    local i
    for i in $(seq 300); do
        if ! kill -0 "$MG_PID" 2>/dev/null; then
            tail -20 "$MG_DIR/stderr.log" >&2
            log "mailgate exited during start-up"
            MG_PID=""
            return 1
        fi
        if python3 -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$MG_HTTP/healthz', timeout=2).status == 200 else 1)" 2>/dev/null; then
            log "mailgate listening on 127.0.0.1:$MG_PORT (http $MG_HTTP)"
            return 0
        fi
        sleep 0.1
    done
    log "mailgate not healthy after 30 s"
    return 1
}

# Messages in the store, from the API (every ticket's message_count) and the
# rejection list; prints "messages rejections".
mg_counts() {
    python3 - "$MG_HTTP" <<'PY'
import json, sys, urllib.request, urllib.parse
base = f"http://127.0.0.1:{sys.argv[1]}"
def pages(path, key):
    cursor = None
    while True:
        q = {"limit": "500"}
        if cursor:
            q["cursor"] = cursor
        with urllib.request.urlopen(f"{base}{path}?{urllib.parse.urlencode(q)}", timeout=60) as r:
            body = json.load(r)
        yield from body[key]
        cursor = body.get("next")
        if not cursor:
            return
msgs = sum(t["message_count"] for t in pages("/api/v1/tickets", "tickets"))
rej = sum(1 for _ in pages("/api/v1/rejections", "rejections"))
print(msgs, rej)
PY
}

# The group-commit histograms' sums and counts from /metrics; prints
# "batch_sum batch_count seconds_sum seconds_count".
mg_commit_stats() {
    python3 - "$MG_HTTP" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=30).read().decode()
want = ["mailgate_store_commit_batch_size_sum", "mailgate_store_commit_batch_size_count",
        "mailgate_store_commit_seconds_sum", "mailgate_store_commit_seconds_count"]
got = {}
for line in text.splitlines():
    parts = line.split()
    if len(parts) >= 2 and parts[0] in want:
        got[parts[0]] = float(parts[1])
print(" ".join(repr(got.get(w, 0.0)) for w in want))
PY
}

# ------------------------------------------------------------------ runs ---
# run_source PORT SESSIONS LOGFILE -> sets SRC_SECS; returns smtp-source's rc
SRC_SECS=0
run_source() {
    local port=$1 sess=$2 logf=$3 t0 t1 rc=0
    t0=$(now)
    "$SMTP_SOURCE" -s "$sess" -m "$MSGS" -l "$MSG_SIZE" -f "$SENDER" -t "$RCPT" \
        -M bench-client.localhost "127.0.0.1:$port" >"$logf" 2>&1 || rc=$?
    t1=$(now)
    SRC_SECS=$(elapsed "$t0" "$t1")
    if [ "$rc" -ne 0 ] || [ -s "$logf" ]; then
        log "smtp-source to port $port exited $rc:"; head -5 "$logf" >&2
    fi
    return "$rc"
}

declare -A PF_RATE PF_E2E MG_RATE SINK_RATE MG_BATCH MG_COMMIT_MS MG_CPU_MS
FAILED=0

bench_postfix() { # sessions round
    local sess=$1 before after t_start t_done waited drained
    before=$(pf_delivered)
    t_start=$(now)
    if ! run_source "$PF_PORT" "$sess" "$WORK/pf-source-$sess-$2.log"; then
        FAILED=1
    fi
    local accept_secs=$SRC_SECS
    # Wait for the queue to drain into the Maildir; time it from the start.
    drained=0
    for waited in $(seq $((DRAIN_TIMEOUT * 10))); do
        after=$(pf_delivered)
        if [ "$((after - before))" -ge "$MSGS" ] && [ "$(pf_queued)" -eq 0 ]; then
            drained=1; break
        fi
        sleep 0.1
    done
    t_done=$(now)
    local total_secs
    total_secs=$(elapsed "$t_start" "$t_done")
    after=$(pf_delivered)
    local got=$((after - before))
    if [ "$drained" != 1 ] || [ "$got" -ne "$MSGS" ]; then
        log "postfix s=$sess: $got of $MSGS in the Maildir, $(pf_queued) still queued"
        FAILED=1
    fi
    PF_RATE[$sess]="${PF_RATE[$sess]:-} $(rate "$MSGS" "$accept_secs")"
    PF_E2E[$sess]="${PF_E2E[$sess]:-} $(rate "$got" "$total_secs")"
    log "postfix  s=$sess: accepted $MSGS in ${accept_secs}s ($(rate "$MSGS" "$accept_secs") msgs/s); $got in Maildir/new after ${total_secs}s ($(rate "$got" "$total_secs") msgs/s end to end)"
}

bench_sink() { # sessions round
    local sess=$1
    if ! run_source "$SINK_PORT" "$sess" "$WORK/sink-source-$sess-$2.log"; then
        FAILED=1
    fi
    SINK_RATE[$sess]="${SINK_RATE[$sess]:-} $(rate "$MSGS" "$SRC_SECS")"
    log "smtp-sink s=$sess: accepted $MSGS in ${SRC_SECS}s ($(rate "$MSGS" "$SRC_SECS") msgs/s)"
}

# mailgate's CPU time so far (user + system, all threads) in clock ticks.
mg_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$MG_PID/stat"; }

bench_mailgate() { # sessions round
    local sess=$1 before_m before_r after_m after_r b0 n0 s0 c0 b1 n1 s1 c1 t0 t1
    read -r before_m before_r < <(mg_counts)
    read -r b0 n0 s0 c0 < <(mg_commit_stats)
    t0=$(mg_cpu_ticks)
    if ! run_source "$MG_PORT" "$sess" "$WORK/mg-source-$sess-$2.log"; then
        FAILED=1
    fi
    local secs=$SRC_SECS
    t1=$(mg_cpu_ticks)
    read -r b1 n1 s1 c1 < <(mg_commit_stats)
    read -r after_m after_r < <(mg_counts)
    local batch commit_ms
    batch=$(awk -v a="$b0" -v b="$b1" -v n="$n0" -v m="$n1" 'BEGIN { if (m - n <= 0) print "n/a"; else printf "%.2f", (b - a) / (m - n) }')
    commit_ms=$(awk -v a="$s0" -v b="$s1" -v n="$c0" -v m="$c1" 'BEGIN { if (m - n <= 0) print "n/a"; else printf "%.3f", 1000 * (b - a) / (m - n) }')
    MG_BATCH[$sess]="${MG_BATCH[$sess]:-} $batch"
    MG_COMMIT_MS[$sess]="${MG_COMMIT_MS[$sess]:-} $commit_ms"
    local cpu_ms
    cpu_ms=$(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" -v n="$MSGS" 'BEGIN { printf "%.3f", 1000 * (b - a) / hz / n }')
    MG_CPU_MS[$sess]="${MG_CPU_MS[$sess]:-} $cpu_ms"
    log "mailgate s=$sess: $((${n1%.*} - ${n0%.*})) transactions, mean batch $batch, mean commit ${commit_ms} ms, ${cpu_ms} ms of CPU per message"
    local got=$((after_m - before_m)) rej=$((after_r - before_r))
    if [ "$got" -ne "$MSGS" ] || [ "$rej" -ne 0 ]; then
        log "mailgate s=$sess: $got of $MSGS stored as ticket messages, $rej rejections"
        FAILED=1
    fi
    MG_RATE[$sess]="${MG_RATE[$sess]:-} $(rate "$MSGS" "$secs")"
    log "mailgate s=$sess: accepted $MSGS in ${secs}s ($(rate "$MSGS" "$secs") msgs/s); $got in the store (API)"
}

median() { awk '{ for (i = 1; i <= NF; i++) a[++n] = $i } END { if (n == 0) { print "n/a"; exit } for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t } if (n % 2) print a[(n + 1) / 2]; else printf "%.3f\n", (a[n / 2] + a[n / 2 + 1]) / 2 }'; }

# ------------------------------------------------------------------ main ---
HAVE_MG=0
HAVE_PF=0
if [ "$MAILGATE_ONLY" != 1 ]; then
    setup_postfix
    HAVE_PF=1
fi
start_sink
if [ "$POSTFIX_ONLY" != 1 ]; then
    if build_mailgate && start_mailgate; then
        HAVE_MG=1
    else
        log "mailgate is not available: measuring Postfix only"
        FAILED=1
    fi
fi

log "$MSGS messages of $MSG_SIZE bytes, sessions: $SESSIONS, rounds: $REPEAT"
for round in $(seq "$REPEAT"); do
    for sess in $SESSIONS; do
        # Alternate who goes first so drift (other load, caches) is shared.
        if [ $((round % 2)) = 1 ]; then order="pf sink mg"; else order="mg sink pf"; fi
        for who in $order; do
            if [ "$who" = sink ]; then bench_sink "$sess" "$round"; fi
            if [ "$who" = pf ] && [ "$HAVE_PF" = 1 ]; then bench_postfix "$sess" "$round"; fi
            if [ "$who" = mg ] && [ "$HAVE_MG" = 1 ]; then bench_mailgate "$sess" "$round"; fi
        done
    done
done

echo
echo "smtp-source: $MSGS msgs x $MSG_SIZE B, new connection per message, 127.0.0.1, $(nproc) cores"
echo "rates are accepted msgs/s (smtp-source wall time; postfix and mailgate ack after fsync, smtp-sink stores nothing); median of $REPEAT round(s)"
echo "batch and commit: mean requests per transaction and mean transaction time in mailgate during its runs (/metrics)"
echo "cpu ms/msg: mailgate's user + system CPU time (/proc/PID/stat, all threads) per message during its runs"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }
printf '%-9s %14s %20s %14s %14s %17s %18s %11s %11s %11s\n' sessions "postfix msg/s" "postfix delivered/s" "sink msg/s" "mailgate msg/s" "mailgate/postfix" "mailgate/smtp-sink" "mean batch" "commit ms" "cpu ms/msg"
for sess in $SESSIONS; do
    pf=$(echo "${PF_RATE[$sess]:-}" | median)
    pfe=$(echo "${PF_E2E[$sess]:-}" | median)
    sink=$(echo "${SINK_RATE[$sess]:-}" | median)
    mg=$(echo "${MG_RATE[$sess]:-}" | median)
    batch=$(echo "${MG_BATCH[$sess]:-}" | tr -d 'n/a' | median)
    cms=$(echo "${MG_COMMIT_MS[$sess]:-}" | tr -d 'n/a' | median)
    cpu=$(echo "${MG_CPU_MS[$sess]:-}" | median)
    printf '%-9s %14s %20s %14s %14s %17s %18s %11s %11s %11s\n' "$sess" "$pf" "$pfe" "$sink" "$mg" \
        "$(ratio "$mg" "$pf")" "$(ratio "$mg" "$sink")" "$batch" "$cms" "$cpu"
done
if [ "$FAILED" != 0 ]; then
    log "some run lost or refused messages, or mailgate was unavailable (see above)"
    exit 1
fi
