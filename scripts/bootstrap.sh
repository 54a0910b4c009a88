#!/usr/bin/env bash
# Installs what the local stack needs and makes sure PostgreSQL and RabbitMQ answer.
# Safe to run again: every step checks first. Non-interactive (works with CI=true, no stdin).
# Root installs system packages itself; anyone else needs passwordless sudo for that step.
#   scripts/bootstrap.sh           uv, the Python workspace, nginx, PostgreSQL, RabbitMQ, npm
#   scripts/bootstrap.sh --bench   the same, and the load generator the benchmarks run (wrk)
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION="0.13.9"
TOOLS_DIR="$HOME/.local/share/shardz"   # a private venv holding uv; bin/uv links to it
MIN_PG=15

log() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif sudo -n true 2>/dev/null; then sudo -n "$@"
    else die "needs root for: $* (run as root or give this user passwordless sudo)"
    fi
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

wait_port() {  # name port seconds
    for _ in $(seq 1 "$3"); do port_open "$2" && return 0; sleep 1; done
    die "$1 does not answer on 127.0.0.1:$2"
}

# uv, without the system's pip (absent on a fresh Debian, refused under PEP 668): a venv of
# our own with its bundled pip. -I keeps a user's PYTHONPATH and site-packages out of it.
install_uv() {
    export PATH="$TOOLS_DIR/bin:$HOME/.local/bin:$PATH"
    command -v uv >/dev/null 2>&1 && return 0
    command -v python3 >/dev/null 2>&1 || apt_install python3
    if ! python3 -I -c 'import ensurepip, venv' 2>/dev/null; then
        apt_install python3-venv
    fi
    log "installing uv $UV_VERSION into $TOOLS_DIR/venv"
    rm -rf "$TOOLS_DIR/venv"
    python3 -I -m venv "$TOOLS_DIR/venv"
    "$TOOLS_DIR/venv/bin/python" -I -m pip install --quiet --disable-pip-version-check \
        "uv==$UV_VERSION"
    mkdir -p "$TOOLS_DIR/bin"
    ln -sf "$TOOLS_DIR/venv/bin/uv" "$TOOLS_DIR/bin/uv"
    uv --version >/dev/null || die "uv did not install"
}

# The newest installed PostgreSQL >= 15 with server binaries (Debian's layout).
pg_major() {
    local dir major best=""
    for dir in /usr/lib/postgresql/*/bin; do
        major=$(basename "$(dirname "$dir")")
        [[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -ge "$MIN_PG" ] && [ -x "$dir/initdb" ] || continue
        if [ -z "$best" ] || [ "$major" -gt "$best" ]; then best=$major; fi
    done
    printf '%s' "$best"
}

install_uv
uv sync --all-packages --frozen --quiet

command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_install nginx
if [ -z "$(pg_major)" ]; then
    apt_install postgresql postgresql-contrib
    [ -n "$(pg_major)" ] || die "PostgreSQL >= $MIN_PG is needed; this release's is older (add the PGDG repository)"
fi
command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmq-server ] || apt_install rabbitmq-server
# The web pages the gateway serves (API reference, dashboard) are built with npm; the
# dashboard's browser tests (tests/e2e) drive Debian's Chromium.
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    apt_install nodejs npm
fi
[ -x /usr/bin/chromium ] || apt_install chromium
if [ ! -f web/dashboard/node_modules/.package-lock.json ] \
    || [ web/dashboard/package-lock.json -nt web/dashboard/node_modules/.package-lock.json ]; then
    log "npm ci (web/dashboard)"
    (cd web/dashboard && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ "${1:-}" = "--bench" ]; then
    command -v wrk >/dev/null 2>&1 || apt_install wrk
fi

# PostgreSQL for the control plane: the machine's own cluster, with whatever pg_hba.conf it
# has; the platform reaches it with a password role (shardz_devstack control-role below).
if ! port_open 5432; then
    cluster_version=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -n 1)
    [ -n "$cluster_version" ] || die "PostgreSQL is installed but has no cluster in /etc/postgresql"
    log "starting PostgreSQL $cluster_version/main"
    as_root pg_ctlcluster --skip-systemctl-redirect "$cluster_version" main start || true
fi
wait_port PostgreSQL 5432 60

if ! port_open 5672; then
    log "starting RabbitMQ"
    as_root rabbitmq-server -detached || true
fi
wait_port RabbitMQ 5672 90

uv run --frozen python -m shardz_devstack control-role
log "ready (PostgreSQL binaries: /usr/lib/postgresql/$(pg_major)/bin)"
