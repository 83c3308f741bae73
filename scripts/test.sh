#!/usr/bin/env bash
# The project's test command (README: ./scripts/test.sh). Does all set-up:
#   1. installs missing test dependencies (scripts/install-test-deps.sh)
#   2. cargo build --locked       -> target/debug/mailgate; the layering check
#   3. cargo test --locked        -> Rust unit tests
#   4. python3 -m pytest -q tests/integration  (real clients against the binary)
# Extra arguments go to pytest, e.g. ./scripts/test.sh -k smuggling -x
# Environment: SKIP_INSTALL=1 skips step 1; SKIP_CARGO_TEST=1 skips step 3.
# Exits non-zero when any step fails (all test steps run even if one fails).
set -euo pipefail

cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }
t_start=$(date +%s)

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    step "installing test dependencies"
    ./scripts/install-test-deps.sh
fi

step "cargo build --locked"
cargo build --locked

target_dir=${CARGO_TARGET_DIR:-$(pwd)/target}
export MAILGATE_BIN=${MAILGATE_BIN:-$target_dir/debug/mailgate}
if [ ! -x "$MAILGATE_BIN" ]; then
    echo "error: $MAILGATE_BIN was not built" >&2
    exit 1
fi

failed=()

step "layering (scripts/check_layers.py)"
if ! "${PYTHON:-python3}" scripts/check_layers.py; then
    failed+=("layering")
fi

if [ "${SKIP_CARGO_TEST:-0}" != 1 ]; then
    step "cargo test --locked"
    if ! cargo test --locked; then
        failed+=("cargo test")
    fi
fi

step "pytest tests/integration (MAILGATE_BIN=$MAILGATE_BIN)"
# Keep pytest's cache out of the tree and its output unbuffered for CI logs.
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
rc=0
"${PYTHON:-python3}" -m pytest -q -p no:cacheprovider tests/integration "$@" || rc=$?
if [ "$rc" -ne 0 ]; then
    # 5 = no tests collected: that is a failure too.
    failed+=("pytest (exit $rc)")
fi

elapsed=$(( $(date +%s) - t_start ))
if [ "${#failed[@]}" -gt 0 ]; then
    printf '\nFAILED: %s (%ss)\n' "${failed[*]}" "$elapsed" >&2
    exit 1
fi
printf '\nall tests passed (%ss)\n' "$elapsed" >&2
