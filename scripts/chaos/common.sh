# shellcheck shell=bash
# Shared by scripts/chaos/<scenario>: builds the release oneclick binary and the chaos binary,
# makes sure nats-server and (for scenarios on the machine's server) PostgreSQL are available,
# then runs `oneclick-chaos <scenario> "$@"` with --out results/chaos/<timestamp>-<scenario>.
# CHAOS_NO_BUILD=1 skips the build (run the binaries already in target/release). A CARGO_TARGET_DIR
# is honoured (the binaries are then looked for there).
# Each scenario starts and stops its own servers; none touches a server it did not start.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$ROOT"

chaos_run() {
    local scenario="$1"; shift
    ensure_build_deps
    if [ -z "${ONECLICK_TEST_NATS_SERVER:-}" ]; then
        ONECLICK_TEST_NATS_SERVER="$(nats_server_bin)"
    fi
    export ONECLICK_TEST_NATS_SERVER
    if [ "${CHAOS_NEEDS_MACHINE_PG:-1}" = 1 ] && [ -z "${ONECLICK_TEST_DATABASE_URL:-}" ]; then
        ONECLICK_TEST_DATABASE_URL="$(scripts/ensure-postgres | tail -n1)"
    fi
    export ONECLICK_TEST_DATABASE_URL="${ONECLICK_TEST_DATABASE_URL:-}"
    if [ "${CHAOS_NO_BUILD:-0}" = 1 ]; then
        log "CHAOS_NO_BUILD=1: using the binaries already in target/release"
    else
        log "building target/release/oneclick and oneclick-chaos"
        cargo build --release --locked -p oneclick --bin oneclick >&2
        cargo build --release --locked -p oneclick-chaos >&2
    fi
    local out=""
    for a in "$@"; do [ "$a" = "--out" ] && out=set; done
    if [ -z "$out" ]; then
        set -- "$@" --out "results/chaos/$(date -u +%Y%m%dT%H%M%SZ)-$scenario"
    fi
    local target="${CARGO_TARGET_DIR:-$ROOT/target}"
    export ONECLICK_CHAOS_BIN="${ONECLICK_CHAOS_BIN:-$target/release/oneclick}"
    exec "$target/release/oneclick-chaos" "$scenario" "$@"
}
