# syntax=docker/dockerfile:1.7
# One image recipe for every SmallShardz service; the workspace root is the build context:
#
#   docker build -f deploy/docker/service.Dockerfile --build-arg SERVICE=identity \
#       --build-arg PORT=8101 -t smallshardz/identity .
#
# The image runs `python -m shardz_<SERVICE> <command>`: `api` by default, `worker` and
# `migrate` (one-shot) are the others. A new service needs no new Dockerfile, only its
# SERVICE and PORT build arguments.

ARG PYTHON_VERSION=3.11
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM python:${PYTHON_VERSION}-slim-bookworm AS base
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# Only the workspace manifests, so the dependency layer below is rebuilt when a pyproject
# changes and not when source does (BuildKit caches COPY by content).
FROM base AS manifests
WORKDIR /src
COPY libs libs
COPY services services
RUN find libs services -type f ! -name pyproject.toml -delete \
 && find libs services -depth -type d -empty -delete

FROM base AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=<name>" >&2; exit 1; }
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY --from=manifests /src/ ./
# Third-party dependencies of this one service, straight from the lock.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package "shardz-${SERVICE}"
COPY libs libs
COPY services services
# The workspace members themselves. They stay editable on purpose: a service finds its
# alembic.ini and migrations/ next to its source (shardz_<name>/__main__.py SERVICE_ROOT).
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package "shardz-${SERVICE}" \
 && python -m compileall -q libs/*/src "services/${SERVICE}" \
 && /app/.venv/bin/python -c "import shardz_${SERVICE}.__main__"

FROM base AS runtime
ARG SERVICE
ARG PORT=8100
# The provisioner runs pg_dump and pg_restore of each tenant cluster's major version (moves,
# exports, imports): PG_CLIENT_MAJORS="15 16 17" installs those clients from the PostgreSQL
# project's apt repository into /usr/lib/postgresql/<major>/bin (PROVISIONER_PG_BIN_ROOT).
ARG PG_CLIENT_MAJORS=""
RUN if [ -n "${PG_CLIENT_MAJORS}" ]; then \
        apt-get update \
     && apt-get install -y --no-install-recommends ca-certificates curl \
     && install -d /usr/share/postgresql-common/pgdg \
     && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
            https://www.postgresql.org/media/keys/ACCC4CF8.asc \
     && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc]" \
            "https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
            > /etc/apt/sources.list.d/pgdg.list \
     && apt-get update \
     && apt-get install -y --no-install-recommends \
            $(for major in ${PG_CLIENT_MAJORS}; do echo "postgresql-client-${major}"; done) \
     && apt-get purge -y curl && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*; \
    fi
RUN groupadd --system --gid 10001 shardz \
 && useradd --system --uid 10001 --gid shardz --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin shardz
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY --from=build /app/libs /app/libs
COPY --from=build /app/services/${SERVICE} /app/services/${SERVICE}

# Settings read <SERVICE>_HOST (default 127.0.0.1, right for a laptop, wrong in a container):
# the entrypoint defaults it to every interface unless the environment says otherwise.
COPY --chmod=0755 <<'EOF' /usr/local/bin/shardz-entrypoint
#!/bin/sh
set -eu
prefix=$(printf '%s' "${SHARDZ_SERVICE}" | tr 'a-z-' 'A-Z_')
eval "export ${prefix}_HOST=\"\${${prefix}_HOST:-0.0.0.0}\""
exec python -m "shardz_${SHARDZ_SERVICE}" "$@"
EOF

# GET /healthz on the port the settings use (<SERVICE>_PORT, else the image's default).
COPY --chmod=0755 <<'EOF' /usr/local/bin/shardz-healthcheck
#!/usr/bin/env python3
import os
import sys
import urllib.request

service = os.environ["SHARDZ_SERVICE"]
port = os.environ.get(service.upper().replace("-", "_") + "_PORT", os.environ["SHARDZ_DEFAULT_PORT"])
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except OSError:
    sys.exit(1)
EOF

ENV PATH=/app/.venv/bin:${PATH} \
    SHARDZ_SERVICE=${SERVICE} \
    SHARDZ_DEFAULT_PORT=${PORT}
LABEL org.opencontainers.image.title="smallshardz-${SERVICE}"
USER 10001:10001
EXPOSE ${PORT}
# Only meaningful for `api`; compose disables it for the worker and migrate containers, and
# Kubernetes ignores it in favour of the Deployment's probes.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/shardz-healthcheck"]
ENTRYPOINT ["/usr/local/bin/shardz-entrypoint"]
CMD ["api"]
