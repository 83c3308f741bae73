#!/usr/bin/env bash
# Outbound benchmark: how fast mailgate's send worker delivers queued agent
# replies through a private Postfix relay (virtual(8) -> Maildir), next to
# Postfix's own smtp-source pushing the same number of same-size messages
# into that Postfix, in the same run.
#
#   bench/outbound_bench.sh                  # 500 replies of ~2 KB text
#   MSGS=200 REPEAT=3 bench/outbound_bench.sh
#   TLS=0 bench/outbound_bench.sh            # skip the STARTTLS row
#   MAILGATE_BIN=target/release/mailgate bench/outbound_bench.sh   # skip the build
#
# Environment knobs: MSGS (500, at most 10000), TEXT_SIZE (2048: bytes of
# reply text), SESSIONS (1: smtp-source sessions; the send worker uses one
# connection at a time), REPEAT (1: rounds; medians are printed), TLS (1:
# also time mailgate over STARTTLS), TIMEOUT (300: seconds a drain may
# take), KEEP (0: keep the temp dir), MAILGATE_BIN.
#
# Needs root (Postfix runs its own master), the packages from
# scripts/install-test-deps.sh, openssl and cargo. Talks to 127.0.0.1 only;
# starts and stops its own Postfix and mailgate and removes its temp dir.
# Exits non-zero when a run lost, refused or failed a message.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)

MSGS=${MSGS:-500}
TEXT_SIZE=${TEXT_SIZE:-2048}
SESSIONS=${SESSIONS:-1}
REPEAT=${REPEAT:-1}
TLS=${TLS:-1}
TIMEOUT=${TIMEOUT:-300}
KEEP=${KEEP:-0}
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
CUSTOMER=alice@relay.test
SUPPORT=support@example.test

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (a private Postfix master needs it)"
[ -x "$SMTP_SOURCE" ] || die "$SMTP_SOURCE missing: run scripts/install-test-deps.sh"
command -v openssl >/dev/null || die "openssl missing"
[ "$MSGS" -ge 1 ] && [ "$MSGS" -le 10000 ] || die "MSGS must be 1..10000"
PATH=$PATH:/usr/sbin:/sbin

WORK=$(mktemp -d /tmp/mailgate-outbench.XXXXXX)
chmod 755 "$WORK"
PF_CONF=$WORK/postfix/etc
PF_QUEUE=$WORK/postfix/queue
PF_DATA=$WORK/postfix/data
PF_LOGDIR=$WORK/postfix/log
MAILDIR_BASE=$WORK/maildir
MAILDIR=$MAILDIR_BASE/relay.test/alice
MG_PID=""
PF_STARTED=0

stop_mailgate() {
    if [ -n "$MG_PID" ] && kill -0 "$MG_PID" 2>/dev/null; then
        kill -TERM "$MG_PID" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$MG_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$MG_PID" 2>/dev/null || true
        wait "$MG_PID" 2>/dev/null || true
    fi
    MG_PID=""
}

cleanup() {
    local rc=$?
    set +e
    stop_mailgate
    if [ "$PF_STARTED" = 1 ]; then
        postfix -c "$PF_CONF" stop >/dev/null 2>&1
        local mpid
        mpid=$(tr -d ' ' <"$PF_QUEUE/pid/master.pid" 2>/dev/null)
        if [ -n "$mpid" ]; then
            for _ in $(seq 50); do kill -0 "$mpid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$mpid" 2>/dev/null
        fi
    fi
    if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
now() { date +%s.%N; }
rate() { awk -v n="$1" -v t="$2" 'BEGIN { if (t <= 0) print "inf"; else printf "%.1f", n / t }'; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { awk '{ for (i = 1; i <= NF; i++) a[++n] = $i } END { if (n == 0) { print "n/a"; exit } for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t } if (n % 2) print a[(n + 1) / 2]; else printf "%.1f\n", (a[n / 2] + a[n / 2 + 1]) / 2 }'; }

wait_greeting() { # port timeout_s
    python3 - "$1" "$2" <<'PY'
import socket, sys, time
port, timeout = int(sys.argv[1]), float(sys.argv[2])
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
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

# ------------------------------------------------------------- Postfix ---
# The relay: a plain port (what smtp-source speaks, and mailgate with
# security = "none") and a STARTTLS port (mailgate's default security) with
# a certificate from a private CA. No AUTH: loopback is in mynetworks.
PF_PLAIN=""; PF_TLS=""
setup_postfix() {
    PF_PLAIN=$(free_port)
    PF_TLS=$(free_port)
    while [ "$PF_TLS" = "$PF_PLAIN" ]; do PF_TLS=$(free_port); done
    mkdir -p "$PF_CONF" "$PF_QUEUE" "$PF_DATA" "$PF_LOGDIR" "$MAILDIR_BASE" "$WORK/ca"
    chown postfix:postfix "$PF_DATA"
    chown nobody:nogroup "$MAILDIR_BASE"
    (
        cd "$WORK/ca"
        local ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
        # shellcheck disable=SC2086
        openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj "/CN=outbound bench CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        # shellcheck disable=SC2086
        openssl req $ec -keyout key.pem -out server.csr -subj /CN=localhost
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >ext.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out cert.pem -days 2 -extfile ext.cnf
        chmod 600 key.pem ca.key
    ) >"$WORK/openssl.log" 2>&1 || { cat "$WORK/openssl.log" >&2; die "openssl failed"; }
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
myhostname = relay-bench.localhost
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
alias_maps =
alias_database =
# Nothing may leave the host.
default_transport = error:bench relay delivers locally only
relay_transport = error:bench relay delivers locally only
local_transport = error:no local delivery
# virtual(8) to one Maildir
virtual_mailbox_domains = relay.test
virtual_mailbox_maps = texthash:$PF_CONF/vmailbox
virtual_mailbox_base = $MAILDIR_BASE
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_minimum_uid = 100
message_size_limit = 52428800
virtual_mailbox_limit = 0
smtpd_tls_cert_file = $WORK/ca/cert.pem
smtpd_tls_key_file = $WORK/ca/key.pem
smtpd_tls_security_level = may
maillog_file_prefixes = $PF_LOGDIR
maillog_file = $PF_LOGDIR/postfix.log
EOF
    printf '%s relay.test/alice/\n' "$CUSTOMER" >"$PF_CONF/vmailbox"
    cat >"$PF_CONF/master.cf" <<EOF
127.0.0.1:$PF_PLAIN inet n - n - - smtpd
  -o smtpd_tls_security_level=none
127.0.0.1:$PF_TLS inet n - n - - smtpd
  -o smtpd_tls_security_level=encrypt
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
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
    wait_greeting "$PF_PLAIN" 30 && wait_greeting "$PF_TLS" 30 \
        || die "postfix did not answer (see $PF_LOGDIR/postfix.log)"
    log "postfix $(postconf -c "$PF_CONF" -h mail_version) relay on 127.0.0.1:$PF_PLAIN (plain), :$PF_TLS (STARTTLS)"
}

delivered() { { find "$MAILDIR/new" -type f 2>/dev/null || true; } | wc -l; }
pf_queued() {
    { find "$PF_QUEUE/incoming" "$PF_QUEUE/active" "$PF_QUEUE/deferred" \
        "$PF_QUEUE/hold" "$PF_QUEUE/maildrop" -type f 2>/dev/null || true; } | wc -l
}
# wait_delivered COUNT: until COUNT files are in the Maildir and the queue is empty
wait_delivered() {
    local i
    for i in $(seq $((TIMEOUT * 10))); do
        if [ "$(delivered)" -ge "$1" ] && [ "$(pf_queued)" -eq 0 ]; then return 0; fi
        sleep 0.1
    done
    log "$(delivered) of $1 in the Maildir, $(pf_queued) still queued after ${TIMEOUT}s"
    return 1
}
newest_size() { # size of the newest Maildir file
    find "$MAILDIR/new" -type f -printf '%T@ %s\n' | sort -n | tail -1 | cut -d' ' -f2
}

# ------------------------------------------------------------ mailgate ---
MG_BIN=""
build_mailgate() {
    if [ -n "${MAILGATE_BIN:-}" ]; then
        MG_BIN=$MAILGATE_BIN
        [ -x "$MG_BIN" ] || die "MAILGATE_BIN=$MG_BIN is not executable"
        return 0
    fi
    log "building mailgate (release; set MAILGATE_BIN to skip)"
    local b0
    b0=$(date +%s)
    cargo build --release --locked >"$WORK/cargo-build.log" 2>&1 \
        || { tail -30 "$WORK/cargo-build.log" >&2; die "mailgate release build failed"; }
    log "build took $(( $(date +%s) - b0 ))s"
    MG_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/mailgate
    [ -x "$MG_BIN" ] || die "no binary at $MG_BIN"
}

MG_SMTP=""; MG_HTTP=""
start_mailgate() { # security (none | starttls) dir
    local security=$1 dir=$2 tls_port relay
    MG_SMTP=$(free_port); MG_HTTP=$(free_port); tls_port=$(free_port)
    mkdir -p "$dir/data" "$dir/certs"
    if [ "$security" = none ]; then
        relay="port = $PF_PLAIN
security = \"none\"
allow_insecure = true"
    else
        relay="port = $PF_TLS
security = \"starttls\"
ca_file = \"$WORK/ca/ca.pem\""
    fi
    cat >"$dir/mailgate.toml" <<EOF
[server]
hostname = "localhost"
data_dir = "$dir/data"
domains = ["example.test"]

[smtp]
listen = ["127.0.0.1:$MG_SMTP"]
listen_tls = ["127.0.0.1:$tls_port"]
max_connections = 512
connections_per_minute_per_ip = 1000000

[tls]
dev_cert_dir = "$dir/certs"

[http]
listen = "127.0.0.1:$MG_HTTP"
api_token_env = "MAILGATE_BENCH_TOKEN"

[relay]
host = "127.0.0.1"
$relay

[outbound]
# Every send limit off: the figure is the worker and the relay.
messages_per_minute = 0
bytes_per_5_minutes = 0
recipients_per_day = 0
retry_initial = "1s"

[[mailbox]]
name = "support"
addresses = ["$SUPPORT"]
queue = "Support"
default = true

# Only the replies are measured: no acknowledgement of the tickets the
# bench opens to reply on.
[mailbox.notify.acknowledgement]
active = false
EOF
    "$MG_BIN" check-config --config "$dir/mailgate.toml" >&2 || die "check-config refused the bench config"
    env -u MAILGATE_BENCH_TOKEN MAILGATE_LOG="${MAILGATE_LOG:-info}" \
        "$MG_BIN" serve --config "$dir/mailgate.toml" >"$dir/stdout.log" 2>"$dir/stderr.log" &
    MG_PID=$!
    local i
    for i in $(seq 300); do
        kill -0 "$MG_PID" 2>/dev/null || { tail -20 "$dir/stderr.log" >&2; MG_PID=""; die "mailgate exited during start-up"; }
        if python3 -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$MG_HTTP/healthz', timeout=2).status == 200 else 1)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "mailgate not healthy after 30 s"
}

# Queues one reply on each of MSGS tickets through the API, times from the
# first POST until mailgate_outbound_sent_total reaches MSGS, then checks
# through the API that every entry is sent. Prints "queue_secs total_secs size".
drive_mailgate() {
    python3 - "$MG_HTTP" "$MSGS" "$TEXT_SIZE" "$TIMEOUT" <<'PY'
import http.client, json, re, sys, time, urllib.parse
port, n, text_size, timeout = (int(a) for a in sys.argv[1:5])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

def get(path):
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"GET {path}: {r.status} {body[:200]!r}")
    return body

def pages(path, key, **q):
    cursor = None
    while True:
        qq = dict(q, limit="500", **({"cursor": cursor} if cursor else {}))
        body = json.loads(get(f"{path}?{urllib.parse.urlencode(qq)}"))
        yield from body[key]
        cursor = body.get("next")
        if not cursor:
            return

tickets = [t["id"] for t in pages("/api/v1/tickets", "tickets")]
if len(tickets) != n:
    sys.exit(f"{len(tickets)} tickets, expected {n}")
line = "Thank you for your message; we are looking into it and will write again. "
text = (line * (text_size // len(line) + 1))[:text_size]
sent_re = re.compile(rb'^mailgate_outbound_sent_total\{[^}]*mailbox="support"[^}]*\} (\S+)', re.M)
t0 = time.monotonic()
for i, tid in enumerate(tickets):
    conn.request("POST", f"/api/v1/tickets/{tid}/reply",
                 body=json.dumps({"text": f"{text}\nref {i}"}).encode(),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    body = r.read()
    if r.status != 201:
        sys.exit(f"POST reply {tid}: {r.status} {body[:200]!r}")
t_queued = time.monotonic()
deadline = t0 + timeout
while True:
    m = sent_re.search(get("/metrics"))
    if m and float(m.group(1)) >= n:
        break
    if time.monotonic() > deadline:
        sys.exit(f"only {m.group(1) if m else 0} of {n} sent after {timeout}s")
    time.sleep(0.01)
t_done = time.monotonic()
sent = list(pages("/api/v1/outbound", "outbound", state="sent"))
others = {s: len(list(pages("/api/v1/outbound", "outbound", state=s)))
          for s in ("queued", "deferred", "failed")}
if len(sent) != n or any(others.values()):
    sys.exit(f"outbox: {len(sent)} sent, {others}")
size = sum(e["size"] for e in sent) // n
print(f"{t_queued - t0:.3f} {t_done - t0:.3f} {size}")
PY
}

# bench_mailgate security round -> appends to MG_RATE[security]
declare -A MG_RATE
PF_RATE=""
FAILED=0
MG_FILE_SIZE=0
bench_mailgate() {
    local security=$1 round=$2 dir before out queue_secs secs size
    dir=$WORK/mailgate-$security-$round
    start_mailgate "$security" "$dir"
    # The tickets the replies answer: one per customer message (smtp-source
    # to mailgate's MX, From alice@relay.test), not timed.
    "$SMTP_SOURCE" -s 4 -m "$MSGS" -l 512 -f "$CUSTOMER" -t "$SUPPORT" -M bench-client.localhost \
        "127.0.0.1:$MG_SMTP" >"$dir/smtp-source.log" 2>&1 || { FAILED=1; log "smtp-source into mailgate failed"; }
    before=$(delivered)
    if ! out=$(drive_mailgate); then
        log "mailgate ($security): $out"; FAILED=1; stop_mailgate; return
    fi
    read -r queue_secs secs size <<<"$out"
    if ! wait_delivered $((before + MSGS)); then FAILED=1; fi
    if [ "$(( $(delivered) - before ))" -ne "$MSGS" ]; then
        log "mailgate ($security): $(( $(delivered) - before )) of $MSGS in the Maildir"; FAILED=1
    fi
    if [ "$security" = none ]; then MG_FILE_SIZE=$(newest_size); fi
    stop_mailgate
    MG_RATE[$security]="${MG_RATE[$security]:-} $(rate "$MSGS" "$secs")"
    log "mailgate outbound ($security): $MSGS replies of $size B queued in ${queue_secs}s, all sent after ${secs}s ($(rate "$MSGS" "$secs") msg/s), $MSGS in the Maildir"
}

# smtp-source's body length so that its delivered file is as large as
# mailgate's (one probe message with a 1-byte body gives the overhead).
SOURCE_LEN=""
calibrate() {
    local before empty
    before=$(delivered)
    "$SMTP_SOURCE" -m 1 -l 1 -f "$SUPPORT" -t "$CUSTOMER" -M bench-client.localhost \
        "127.0.0.1:$PF_PLAIN" >"$WORK/probe.log" 2>&1 || die "smtp-source probe failed"
    wait_delivered $((before + 1)) || die "probe not delivered"
    empty=$(( $(newest_size) - 1 ))
    SOURCE_LEN=$(( MG_FILE_SIZE > empty + 1 ? MG_FILE_SIZE - empty : 1 ))
    log "delivered sizes: mailgate reply $MG_FILE_SIZE B, smtp-source headers $empty B -> smtp-source -l $SOURCE_LEN"
}

bench_postfix() { # round
    local before t0 t1 secs rc=0
    before=$(delivered)
    t0=$(now)
    "$SMTP_SOURCE" -s "$SESSIONS" -m "$MSGS" -l "$SOURCE_LEN" -f "$SUPPORT" -t "$CUSTOMER" \
        -M bench-client.localhost "127.0.0.1:$PF_PLAIN" >"$WORK/pf-source-$1.log" 2>&1 || rc=$?
    t1=$(now)
    secs=$(elapsed "$t0" "$t1")
    if [ "$rc" -ne 0 ] || [ -s "$WORK/pf-source-$1.log" ]; then
        log "smtp-source exited $rc:"; head -5 "$WORK/pf-source-$1.log" >&2; FAILED=1
    fi
    wait_delivered $((before + MSGS)) || FAILED=1
    [ "$(( $(delivered) - before ))" -eq "$MSGS" ] || { log "smtp-source: $(( $(delivered) - before )) of $MSGS delivered"; FAILED=1; }
    PF_RATE="$PF_RATE $(rate "$MSGS" "$secs")"
    log "smtp-source -> postfix: $MSGS messages (-l $SOURCE_LEN, $(newest_size) B delivered) in ${secs}s ($(rate "$MSGS" "$secs") msg/s)"
}

# ---------------------------------------------------------------- main ---
setup_postfix
build_mailgate
SECURITIES="none"
if [ "$TLS" = 1 ]; then SECURITIES="none starttls"; fi
log "$MSGS replies of $TEXT_SIZE B text, rounds: $REPEAT, smtp-source sessions: $SESSIONS"
for round in $(seq "$REPEAT"); do
    for security in $SECURITIES; do bench_mailgate "$security" "$round"; done
    [ -n "$SOURCE_LEN" ] || calibrate
    bench_postfix "$round"
done

pf=$(echo "$PF_RATE" | median)
echo
echo "outbound: $MSGS messages of ~$MG_FILE_SIZE B (as delivered), one new connection per message, 127.0.0.1, $(nproc) cores; median of $REPEAT round(s)"
printf '%-44s %10s %8s\n' "" "msg/s" "ratio"
printf '%-44s %10s %8s\n' "smtp-source -> postfix (plain, -s $SESSIONS)" "$pf" "1.00"
for security in $SECURITIES; do
    mg=$(echo "${MG_RATE[$security]:-}" | median)
    printf '%-44s %10s %8s\n' "mailgate outbound -> postfix ($security)" "$mg" \
        "$(awk -v a="$mg" -v b="$pf" 'BEGIN { if (b + 0 > 0 && a + 0 > 0) printf "%.2f", a / b; else print "n/a" }')"
done
if [ "$FAILED" != 0 ]; then
    log "a run lost, refused or failed messages (see above)"
    exit 1
fi
