#!/bin/sh
# compose only: the nginx image runs /docker-entrypoint.d/*.sh before nginx starts. Writes the
# per-address budget on /v1/auth/* (CONTRACT section 10, PLATFORM_AUTH_RATE_LIMIT_PER_MINUTE)
# into conf.d, which nginx.compose.conf includes. A minute's worth may arrive at once: nginx
# admits one request plus `burst`, hence N - 1.
set -eu
n="${PLATFORM_AUTH_RATE_LIMIT_PER_MINUTE:-120}"
out="${AUTH_LIMIT_DIR:-/etc/nginx/conf.d}"
case "$n" in
    '' | *[!0-9]* | 0) echo "PLATFORM_AUTH_RATE_LIMIT_PER_MINUTE must be a positive integer, not '$n'" >&2; exit 1 ;;
esac
echo "limit_req_zone \$binary_remote_addr zone=auth:10m rate=${n}r/m;" > "$out/auth-limit.conf"
echo "limit_req zone=auth burst=$((n - 1)) nodelay;" > "$out/auth-limit.rules"
