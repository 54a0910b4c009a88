#!/bin/sh
# Containers only (compose, Kubernetes): the nginx image runs /docker-entrypoint.d/*.sh before
# nginx starts. Writes into conf.d, which the rendered config includes:
# - the per-address budget on /v1/auth/* (CONTRACT section 10,
#   PLATFORM_AUTH_RATE_LIMIT_PER_MINUTE); a minute's worth may arrive at once: nginx admits one
#   request plus `burst`, hence N - 1;
# - HTTPS on 8443 when a certificate and key are mounted at /etc/nginx/tls/tls.crt|tls.key
#   (otherwise the listen files are empty: TLS ends at the Ingress or a proxy in front).
set -eu
n="${PLATFORM_AUTH_RATE_LIMIT_PER_MINUTE:-120}"
out="${GATEWAY_CONF_DIR:-/etc/nginx/conf.d}"
tls="${GATEWAY_TLS_DIR:-/etc/nginx/tls}"
case "$n" in
    '' | *[!0-9]* | 0) echo "PLATFORM_AUTH_RATE_LIMIT_PER_MINUTE must be a positive integer, not '$n'" >&2; exit 1 ;;
esac
echo "limit_req_zone \$binary_remote_addr zone=auth:10m rate=${n}r/m;" > "$out/auth-limit.conf"
echo "limit_req zone=auth burst=$((n - 1)) nodelay;" > "$out/auth-limit.rules"
if [ -r "$tls/tls.crt" ] && [ -r "$tls/tls.key" ]; then
    printf 'ssl_certificate %s;\nssl_certificate_key %s;\n' "$tls/tls.crt" "$tls/tls.key" > "$out/tls.conf"
    echo "listen 8443 ssl;" > "$out/tls.listen"
    echo "listen 8443 ssl default_server;" > "$out/tls.listen-default"
else
    : > "$out/tls.conf"
    : > "$out/tls.listen"
    : > "$out/tls.listen-default"
fi
