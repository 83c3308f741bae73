#!/usr/bin/env bash
# Install everything the test suite and benchmarks need, skipping what is
# already present. Idempotent; meant for a Debian 12 machine as root (CI), but
# also works with sudo for a developer.
#
#   Debian packages: swaks libnet-ssleay-perl postfix dovecot-core
#                    dovecot-imapd dovecot-pop3d openssl prometheus (no daemon
#                    is started; openssl makes the private CA of the Dovecot
#                    tests; prometheus brings promtool, which checks /metrics)
#                    libargon2-1 (the reference argon2, checks hash-password)
#                    strace (shows that no 250 goes out before its fdatasync)
#   Python:          pytest (requirements-test.txt)
#   Courier-IMAP, Cyrus: unpacked under /opt/mailgate-test, next to Dovecot
#                    (scripts/install-imap-servers.sh; they conflict with it)
set -euo pipefail

cd "$(dirname "$0")/.."

log() { printf '[install-test-deps] %s\n' "$*" >&2; }

APT_UPDATED=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        log "missing packages $* and no apt-get: install them by hand"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [ "$APT_UPDATED" = 0 ]; then
        $SUDO apt-get update -q
        APT_UPDATED=1
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "$@" </dev/null
}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    fi
fi

# ---- Debian packages --------------------------------------------------------
APT_PKGS=(swaks libnet-ssleay-perl postfix dovecot-core dovecot-imapd dovecot-pop3d openssl libargon2-1 strace)
missing=()
for p in "${APT_PKGS[@]}"; do
    if ! dpkg -s "$p" >/dev/null 2>&1 \
        || ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing+=("$p")
    fi
done
# Belt and braces: the binaries we actually call.
for bin in swaks /usr/sbin/postfix /usr/sbin/smtp-source /usr/sbin/dovecot doveadm openssl promtool; do
    if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "$bin" ]; then
        case "$bin" in
            swaks) missing+=(swaks) ;;
            */postfix|*/smtp-source) missing+=(postfix) ;;
            */dovecot|doveadm) missing+=(dovecot-core) ;;
            openssl) missing+=(openssl) ;;
            promtool) missing+=(prometheus) ;;
        esac
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    # de-duplicate
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    log "installing Debian packages: ${missing[*]}"
    # No questions from postfix's installer, and no system instance configured.
    echo 'postfix postfix/main_mailer_type select No configuration' \
        | $SUDO debconf-set-selections
    apt_install "${missing[@]}"
    # The prometheus package enables and starts a Prometheus server; the
    # tests only want its promtool.
    if printf '%s\n' "${missing[@]}" | grep -qx prometheus \
        && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
else
    log "Debian packages already installed"
fi

# ---- Courier-IMAP and Cyrus (more upstream IMAP servers) ---------------------
./scripts/install-imap-servers.sh

# ---- Python -----------------------------------------------------------------
PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null 2>&1; then
    log "python3 not found"
    exit 1
fi
if "$PY" -c 'import pytest, pytest_timeout' >/dev/null 2>&1; then
    log "pytest already installed ($("$PY" -m pytest --version 2>&1 | head -1))"
else
    log "installing Python test requirements"
    if ! "$PY" -m pip --version >/dev/null 2>&1; then
        # Debian's python3 ships without pip.
        apt_install python3-pip
    fi
    pip_args=(install --disable-pip-version-check --root-user-action=ignore -q -r requirements-test.txt)
    if ! "$PY" -m pip "${pip_args[@]}"; then
        log "pip refused (PEP 668?); retrying with --break-system-packages"
        "$PY" -m pip "${pip_args[@]}" --break-system-packages
    fi
fi

log "done"
