"""Static checks of the service image recipe, docker-compose.yml and the compose gateway.
No network, no container engine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from shardz_common import unroutable
from shardz_devstack import gateway
from shardz_devstack.config import KNOWN_SERVICES, StackConfig
from tests.static.deploy_support import (
    DOCKERFILE,
    GATEWAY_COMPOSE,
    GATEWAY_DOCKERFILE,
    ROOT,
    SERVICES,
    check_settings,
    compose,
    compose_vars,
    gateway_routes,
    nginx_check,
    prefix,
    route_table,
    settings_class,
)

# ---- service settings -------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_settings_port_matches_the_platform_port(service: str) -> None:
    assert settings_class(service).model_fields["port"].default == SERVICES[service]


# ---- image --------------------------------------------------------------------------------


def test_dockerfile_builds_one_service_with_uv_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    assert "FROM ghcr.io/astral-sh/uv:" in text
    assert re.search(r'uv sync --frozen --no-dev[^\n]*--package "shardz-\$\{SERVICE\}"', text)
    runtime = text[text.rindex("\nFROM ") :]
    users = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK .*\n?.*shardz-healthcheck", runtime, re.M)
    assert "/healthz" in runtime
    assert re.search(r'^CMD \["api"\]$', runtime, re.M)
    assert 'python -m "shardz_${SHARDZ_SERVICE}"' in runtime
    ignore = DOCKERFILE.with_name(DOCKERFILE.name + ".dockerignore").read_text().split()
    assert {".data", ".git", "**/.venv"} <= set(ignore)


# ---- docker compose ---------------------------------------------------------------------


def test_compose_requires_every_secret_and_defaults_nothing_secret() -> None:
    variables = compose_vars()
    secretish = {k: op for k, op in variables.items() if re.search(r"PASSWORD|SECRET|_KEY", k)}
    assert secretish, "no secrets found in docker-compose.yml"
    defaulted = {k for k, op in secretish.items() if op != ":?"}
    assert not defaulted, f"secrets must use ${{VAR:?}}: {sorted(defaulted)}"
    env = {k: "v" for k, op in variables.items() if op}
    compose(env)
    for name in secretish:
        with pytest.raises(KeyError, match=name):
            compose({k: v for k, v in env.items() if k != name})


def test_compose_infrastructure() -> None:
    services = compose()["services"]
    for name in ("postgres", "tenant-postgres", "rabbitmq", "minio", "gateway"):
        assert name in services, name
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert "management" in services["rabbitmq"]["image"]
    tenant = services["tenant-postgres"]["environment"]
    assert tenant["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    assert "--auth-local=scram-sha-256" in tenant["POSTGRES_INITDB_ARGS"]
    for name, svc in services.items():
        env = svc.get("environment") or {}
        assert "trust" not in str(env.get("POSTGRES_HOST_AUTH_METHOD", "")), name
    gateway = services["gateway"]
    assert any(str(p).endswith(":8080") for p in gateway["ports"])
    assert any("nginx.compose.conf:/etc/nginx/nginx.conf" in v for v in gateway["volumes"])


def test_compose_dependencies_exist_and_can_become_healthy() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                target = services[dep]
                has_check = "test" in target.get("healthcheck", {}) or "build" in target
                assert has_check and not target.get("healthcheck", {}).get("disable"), (name, dep)


@pytest.mark.parametrize("service", SERVICES)
def test_compose_service_block(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = compose()
    services = loaded["services"]
    port = SERVICES[service]
    for role in ("migrate", "api", "worker"):
        svc = services[f"{service}-{role}"]
        assert svc["command"] == [role]
        assert svc["build"]["dockerfile"] == "deploy/docker/service.Dockerfile"
        assert svc["build"]["args"] == {"SERVICE": service, "PORT": str(port)}
        assert svc["image"].rsplit(":", 1)[0] == f"smallshardz/{service}"
        assert svc["read_only"] is True and "ALL" in svc["cap_drop"]
        env = svc["environment"]
        check_settings(service, env, monkeypatch)
        url = env[f"{prefix(service)}DATABASE_URL"]
        assert url.endswith(f"@postgres:5432/shardz_{service}")
        assert f"://shardz_{service}:" in url
        if role == "migrate":
            assert svc["restart"] == "no"
            assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        else:
            migrate = svc["depends_on"][f"{service}-migrate"]["condition"]
            assert migrate == "service_completed_successfully"
            assert svc["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        assert svc.get("healthcheck", {}).get("disable", False) is (role != "api")
    env = services[f"{service}-api"]["environment"]
    for other, other_port in SERVICES.items():
        assert env[f"PLATFORM_{other.upper()}_URL"] == f"http://{other}-api:{other_port}"
    init = loaded["configs"]["control-databases"]["content"]
    assert f"CREATE DATABASE shardz_{service} OWNER shardz_{service};" in init


def test_compose_tenant_clusters_are_valid_json() -> None:
    env = compose()["services"]["provisioner-api"]["environment"]
    clusters = json.loads(env["PROVISIONER_TENANT_CLUSTERS"])
    assert clusters and all(
        set(c) == {"name", "admin_dsn", "host", "port", "capacity"} for c in clusters
    )
    assert clusters[0]["admin_dsn"].split("@")[1].startswith("tenant-postgres:5432/")
    assert isinstance(clusters[0]["port"], int)


# ---- gateway ------------------------------------------------------------------------------


def test_compose_gateway_is_rendered_from_the_route_table() -> None:
    """nginx.compose.conf is generated, never hand-kept: edited alone, it fails here."""
    compose_conf = GATEWAY_COMPOSE.read_text()
    assert compose_conf == gateway.render_compose(), (
        "deploy/gateway/nginx.compose.conf is stale: run "
        "`uv run python -m shardz_devstack gateway-config --compose`"
    )
    routes = gateway_routes(compose_conf)
    assert routes == route_table()
    assert {label for label, _, _ in routes} == {"api", "terminal", "dashboard"}
    assert {svc for _, _, svc in routes} == set(KNOWN_SERVICES)
    for name, port in KNOWN_SERVICES.items():
        assert f"set ${name} {name}-api:{port};" in compose_conf
    assert "internal" not in "".join(loc for _, loc, _ in routes)
    assert "server_name ~^dashboard\\.;" in compose_conf


def test_local_gateway_routes_the_same_table(tmp_path: Path) -> None:
    config = StackConfig.test(slot=0)
    config = dataclasses.replace(config, data_dir=tmp_path)
    assert gateway_routes(gateway.render(config)) == route_table()


def test_compose_gateway_points_at_compose_services() -> None:
    services = compose()["services"]
    for name in SERVICES:
        assert f"{name}-api" in services


def test_compose_gateway_runs_the_gateway_image_with_its_own_config() -> None:
    gw = compose()["services"]["gateway"]
    assert gw["build"]["dockerfile"] == "deploy/docker/gateway.Dockerfile"
    assert gw["image"].rsplit(":", 1)[0] == "smallshardz/gateway"
    assert gw["volumes"] == ["./deploy/gateway/nginx.compose.conf:/etc/nginx/nginx.conf:ro"]
    assert {"/tmp", "/etc/nginx/conf.d"} <= set(gw["tmpfs"]) and gw["read_only"] is True
    assert "PLATFORM_AUTH_RATE_LIMIT_PER_MINUTE" in gw["environment"]
    dockerfile = GATEWAY_DOCKERFILE.read_text()
    for copied in re.findall(r"^COPY (?!--from)(?:--chmod=\S+ )?(\S+) ", dockerfile, re.MULTILINE):
        assert (ROOT / copied).exists(), copied
    assert "deploy/gateway/problems.conf /etc/nginx/problems.conf" in dockerfile
    assert "deploy/gateway/gateway-env.sh /docker-entrypoint.d/" in dockerfile
    script = GATEWAY_COMPOSE.parent / "gateway-env.sh"
    assert os.access(script, os.X_OK), "the entrypoint skips scripts that are not executable"


def test_gateway_env_script_writes_the_budget_and_tls_and_refuses_nonsense(
    tmp_path: Path,
) -> None:
    script = GATEWAY_COMPOSE.parent / "gateway-env.sh"
    tls = tmp_path / "tls"
    tls.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "GATEWAY_CONF_DIR": str(tmp_path),
        "GATEWAY_TLS_DIR": str(tls),
    }
    refused = subprocess.run(
        ["sh", str(script)],
        env={**env, "PLATFORM_AUTH_RATE_LIMIT_PER_MINUTE": "lots"},
        capture_output=True,
        check=False,
    )
    assert refused.returncode != 0
    subprocess.run(
        ["sh", str(script)], env={**env, "PLATFORM_AUTH_RATE_LIMIT_PER_MINUTE": "30"}, check=True
    )
    assert "burst=29 nodelay" in (tmp_path / "auth-limit.rules").read_text()
    assert "rate=30r/m" in (tmp_path / "auth-limit.conf").read_text()
    assert (tmp_path / "tls.listen").read_text() == ""  # no certificate: plain HTTP only
    (tls / "tls.crt").write_text("x")
    (tls / "tls.key").write_text("x")
    subprocess.run(["sh", str(script)], env=env, check=True)
    assert (tmp_path / "tls.listen").read_text().strip() == "listen 8443 ssl;"
    assert f"ssl_certificate {tls}/tls.crt;" in (tmp_path / "tls.conf").read_text()


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_compose_gateway_config_passes_nginx_t(tmp_path: Path) -> None:
    check = nginx_check(GATEWAY_COMPOSE.read_text(), tmp_path)
    assert check.returncode == 0, check.stderr


def test_compose_keeps_unroutable_events_by_the_platforms_policy() -> None:
    services = compose()["services"]
    setup = services["rabbitmq-policies"]
    script = setup["command"][-1]
    url = re.search(r"http://rabbitmq:15672/api/policies/%2F/(\S+)", script)
    assert url and url.group(1) == unroutable.POLICY_NAME
    body = json.loads(script[script.index("-d '") + 4 : script.rindex("'")].replace("$$", "$"))
    assert re.fullmatch(body["pattern"], "platform.events")
    assert body["pattern"] == unroutable.POLICY_PATTERN
    assert body["definition"] == unroutable.POLICY_DEFINITION
    assert body["apply-to"] == "exchanges"
    for name, svc in services.items():
        if name.endswith("-migrate"):
            assert svc["depends_on"]["rabbitmq-policies"]["condition"] == (
                "service_completed_successfully"
            ), name
