#!/usr/bin/env bash
# Courier-IMAP and Cyrus IMAP for the upstream-puller tests, next to Dovecot.
#
# Both Debian packages conflict with dovecot-imapd (every IMAP server
# "provides imap-server"), so `apt-get install` would remove Dovecot. Instead:
#   * the non-conflicting dependencies are apt-installed normally (Courier's
#     courier-base, courier-authdaemon, courier-authlib-userdb, gamin and its
#     libraries; sasl2-bin and the shared libraries Cyrus's binaries link);
#   * courier-imap, cyrus-imapd and cyrus-common are fetched with
#     `apt-get download` and unpacked with `dpkg -x` into a private prefix,
#     never registered with dpkg, no maintainer script run:
#       /opt/mailgate-test/courier   (usr/bin/imapd, etc/courier/imapd...)
#       /opt/mailgate-test/cyrus     (usr/lib/cyrus/bin/{master,imapd,...},
#                                     usr/lib/x86_64-linux-gnu/libcyrus*.so)
# (cyrus-common is not installed with apt: it pulls in an MTA and cyrus-admin's
# Perl; only its master process, tools and libraries are needed.)
# The tests (tests/integration/courier.py, cyrus.py) start private instances
# from there with their own configuration under a temp dir.
#
# Idempotent: does nothing when the prefixes are complete and their binaries
# find every library. Debian 12 as root (CI), or with sudo.
# Environment: MAILGATE_TEST_PREFIX (default /opt/mailgate-test).
set -euo pipefail

PREFIX=${MAILGATE_TEST_PREFIX:-/opt/mailgate-test}
COURIER=$PREFIX/courier
CYRUS=$PREFIX/cyrus

log() { printf '[install-imap-servers] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi

COURIER_DEPS=(courier-base courier-authdaemon courier-authlib-userdb gamin libgamin0
              libcourier-unicode4 libidn12 libgdbm6 gnutls-bin)
CYRUS_DEPS=(sasl2-bin libsasl2-2 libsasl2-modules libical3 libicu72 libjansson4 libkrb5-3
            libldap-2.5-0 libpcre3 libpq5 libsqlite3-0 libssl3 libwrap0 libxapian30 libxml2
            zlib1g libcom-err2)

# The binaries the tests run, and the libraries they must find.
COURIER_BINS=("$COURIER/usr/bin/imapd" "$COURIER/usr/lib/courier/courier/imaplogin")
CYRUS_BINS=("$CYRUS/usr/lib/cyrus/bin/master" "$CYRUS/usr/lib/cyrus/bin/imapd"
            "$CYRUS/usr/lib/cyrus/bin/ctl_cyrusdb")
CYRUS_LIBDIR=$CYRUS/usr/lib/x86_64-linux-gnu

unresolved() {  # prints "binary: lib" for each library a binary cannot find
    local libdir=$1; shift
    local b
    for b in "$@"; do
        if [ ! -x "$b" ]; then
            echo "$b: missing"
            continue
        fi
        LD_LIBRARY_PATH=$libdir ldd "$b" 2>/dev/null | awk -v b="$b" '/not found/{print b": "$1}'
    done
}

complete() {
    [ -z "$(unresolved "$CYRUS_LIBDIR" "${COURIER_BINS[@]}" "${CYRUS_BINS[@]}")" ] \
        && [ -x /usr/sbin/couriertcpd ] && [ -x /usr/lib/courier/courier-authlib/authdaemond ] \
        && [ -x /usr/sbin/makeuserdb ] && [ -x /usr/sbin/saslpasswd2 ] \
        && command -v unshare >/dev/null 2>&1
}

if complete; then
    log "Courier-IMAP and Cyrus already unpacked under $PREFIX"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    log "Courier-IMAP / Cyrus missing under $PREFIX and no apt-get: see this script for how"
    exit 1
fi

missing=()
for p in "${COURIER_DEPS[@]}" "${CYRUS_DEPS[@]}" util-linux; do
    if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing their dependencies: ${missing[*]}"
    $SUDO apt-get update -q
    # No daemon is wanted from these (courier-authdaemon has an init script;
    # tests start their own authdaemond in a private mount namespace).
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" </dev/null
fi

work=$(mktemp -d /tmp/mailgate-imap-debs.XXXXXX)
trap 'rm -rf "$work"' EXIT
# apt-get download writes as the _apt sandbox user when it can.
chmod 755 "$work"
if id _apt >/dev/null 2>&1; then
    chown _apt "$work" 2>/dev/null || true
fi
log "downloading courier-imap cyrus-imapd cyrus-common (not installed: they conflict with Dovecot)"
(cd "$work" && apt-get download -q courier-imap cyrus-imapd cyrus-common)

unpack() {  # unpack DEST DEB...
    local dest=$1; shift
    local tmp="$dest.new"
    $SUDO rm -rf "$tmp"
    $SUDO mkdir -p "$tmp"
    local deb
    for deb in "$@"; do
        $SUDO dpkg -x "$deb" "$tmp"
    done
    $SUDO rm -rf "$dest"
    $SUDO mv "$tmp" "$dest"
}
unpack "$COURIER" "$work"/courier-imap_*.deb
unpack "$CYRUS" "$work"/cyrus-imapd_*.deb "$work"/cyrus-common_*.deb
# The SONAME links that ldconfig would have made.
for lib in "$CYRUS_LIBDIR"/libcyrus*.so.*.*.*; do
    soname=$(basename "$lib" | sed -E 's/(\.so\.[0-9]+).*/\1/')
    $SUDO ln -sf "$(basename "$lib")" "$CYRUS_LIBDIR/$soname"
done

bad=$(unresolved "$CYRUS_LIBDIR" "${COURIER_BINS[@]}" "${CYRUS_BINS[@]}")
if [ -n "$bad" ]; then
    log "unpacked, but some libraries are not found:"
    printf '%s\n' "$bad" >&2
    exit 1
fi
log "Courier-IMAP $(ls "$work"/courier-imap_*.deb | sed -E 's/.*_([^_]+)_[^_]+\.deb/\1/') and Cyrus $(ls "$work"/cyrus-imapd_*.deb | sed -E 's/.*_([^_]+)_[^_]+\.deb/\1/') ready under $PREFIX"
