#!/usr/bin/env bash
# Installs what the local stack needs and makes sure PostgreSQL and RabbitMQ answer.
# Safe to run again: every step checks first. Non-interactive (works with CI=true, no stdin).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'bootstrap: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }
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
    log "$1 does not answer on 127.0.0.1:$2"; return 1
}

# uv and the workspace
if ! command -v uv >/dev/null 2>&1; then
    log "installing uv with pip"
    python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
    export PATH="$HOME/.local/bin:$PATH"
fi
uv sync --all-packages --frozen --quiet 2>/dev/null || uv sync --all-packages --quiet

# system packages, only when missing
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_install nginx
if [ ! -x /usr/lib/postgresql/15/bin/initdb ] && ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt_install postgresql-15
fi
command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmq-server ] || apt_install rabbitmq-server

# PostgreSQL for the control plane (trusts local connections in development)
if ! port_open 5432; then
    log "starting PostgreSQL"
    as_root pg_ctlcluster --skip-systemctl-redirect 15 main start || true
fi
wait_port PostgreSQL 5432 60

# RabbitMQ
if ! port_open 5672; then
    log "starting RabbitMQ"
    as_root rabbitmq-server -detached || true
fi
wait_port RabbitMQ 5672 90
log "ready"
