"""Shared helpers of the static deployment checks (test_compose.py, test_k8s.py): paths,
the service list, the settings each service reads, compose's variable interpolation and the
nginx gateway's routes. No tests here.

The service list is the workspace itself (`services/<name>/pyproject.toml`): a new service
fails these tests until it has its compose block, its gateway line and its k8s file.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from shardz_common.settings import InternalSecrets, PlatformSettings, ServiceSettings
from shardz_devstack import gateway
from shardz_devstack.config import KNOWN_SERVICES

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "service.Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
GATEWAY_DIR = ROOT / "deploy" / "gateway"
GATEWAY_COMPOSE = GATEWAY_DIR / "nginx.compose.conf"
GATEWAY_DOCKERFILE = ROOT / "deploy" / "docker" / "gateway.Dockerfile"
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")


def _service_name(pyproject: Path) -> str:
    """`shardz-terminal` in services/terminal-gateway: the platform's name of a service is
    its package's, not its folder's."""
    return str(tomllib.loads(pyproject.read_text())["project"]["name"]).removeprefix("shardz-")


SERVICES: dict[str, int] = {
    _service_name(p): KNOWN_SERVICES[_service_name(p)]
    for p in sorted((ROOT / "services").glob("*/pyproject.toml"))
}
# Settings a deployment must set even though they have a default (the default is for a
# laptop), beyond the generic ones of `required_env`.
EXTRA_REQUIRED = {
    "identity": {"BOOTSTRAP_ADMIN_EMAIL", "BOOTSTRAP_ADMIN_PASSWORD"},
    "provisioner": {"TENANT_CLUSTERS"},
    "billing": {"PAYSTACK_SECRET_KEY"},
}
# Services that keep no secret at rest, so need no <PREFIX>SECRET_KEY (a Fernet key).
NO_DATA_KEY = {"billing", "terminal"}
INTERNAL_SECRETS = {f.upper() for f in InternalSecrets.model_fields}
# CONTRACT.md section 1: (host label, path, service). "dashboard" is the web app.
CONTRACT_ROUTES = {
    ("api", "/v1/auth", "identity"),
    ("api", "/v1/users", "identity"),
    ("api", "/v1/api-keys", "identity"),
    ("api", "/.well-known/jwks.json", "identity"),
    ("api", "/v1/databases", "provisioner"),
    ("api", "/v1/storage", "storage"),
    ("api", "/v1/billing", "billing"),
    ("api", "/v1/terminal/history", "terminal"),
    ("terminal", "/v1/terminal/", "terminal"),
    ("dashboard", "/", "dashboard"),
}
NEVER_ROUTED = ("/internal", "/healthz", "/readyz", "/metrics", "/openapi.json")


# ---- service settings -------------------------------------------------------------------


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"shardz_{service}.config")
    found = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, ServiceSettings) and v is not ServiceSettings
    ]
    assert len(found) == 1, f"shardz_{service}.config should define one ServiceSettings"
    return found[0]


def prefix(service: str) -> str:
    return str(settings_class(service).model_config.get("env_prefix", ""))


def known_env() -> set[str]:
    """Every variable some service's settings read."""
    names = {f"PLATFORM_{f.upper()}" for f in PlatformSettings.model_fields}
    names |= {f.upper() for f in InternalSecrets.model_fields}
    for service in SERVICES:
        cls = settings_class(service)
        names |= {prefix(service) + f.upper() for f in cls.model_fields}
    return names


def required_env(service: str) -> set[str]:
    p = prefix(service)
    names = {f"{p}DATABASE_URL", f"{p}HOST", f"{p}PORT", "PLATFORM_AMQP_URL"}
    names |= INTERNAL_SECRETS
    names |= {
        f"PLATFORM_{f.upper()}"
        for f in PlatformSettings.model_fields
        if f.endswith("_url") and f.removesuffix("_url") in SERVICES
    }
    for field, info in settings_class(service).model_fields.items():
        secretish = any(w in field for w in ("secret", "password", "key"))
        if secretish and isinstance(info.default, str) and info.default:
            names.add(p + field.upper())  # a built-in dev value must never reach a deployment
        if field == "secret_key" and service not in NO_DATA_KEY:
            names.add(p + field.upper())  # the Fernet key of data at rest: no default works
    names |= {p + name for name in EXTRA_REQUIRED.get(service, set())}
    return names


def check_settings(service: str, env: Mapping[str, str], mp: pytest.MonkeyPatch) -> None:
    """The environment parses into the service's settings, listening where it should."""
    unknown = {k for k in env if k not in known_env()}
    assert not unknown, f"{service}: variables no settings read (typos?): {sorted(unknown)}"
    missing = required_env(service) - set(env)
    assert not missing, f"{service}: variables its settings need: {sorted(missing)}"
    with mp.context() as m:
        for key, value in env.items():
            m.setenv(key, value)
        settings = settings_class(service)()
    assert settings.host == "0.0.0.0"
    assert settings.port == SERVICES[service]
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.platform.amqp_url.startswith("amqp://")


# ---- docker compose ---------------------------------------------------------------------

_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_]\w*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_]\w*))")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: $$, $V, ${V}, ${V:-d}, ${V-d}, ${V:?err}, ${V?err}."""

    def one(m: re.Match[str]) -> str:
        if m[1]:
            return "$"
        name = m[2] or m[5]
        op, arg = m[3], m[4] or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in ("-", ":-") and unset:
            return arg
        if op in ("?", ":?") and unset:
            raise KeyError(f"{name}: {arg}")
        return value or ""

    return _VAR.sub(one, value)


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(v, env) for v in node]
    if isinstance(node, dict):
        return {k: resolve(v, env) for k, v in node.items()}
    return node


def compose_vars() -> dict[str, str | None]:
    """Each variable the file interpolates, with its operator (None when bare)."""
    return {m[2] or m[5]: m[3] for m in _VAR.finditer(COMPOSE.read_text()) if not m[1]}


def compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    if env is None:
        env = {
            k: f"x{k.lower().replace('_', '')}1"
            for k, op in compose_vars().items()
            if op in (":?", "?")
        }
    loaded: dict[str, Any] = resolve(yaml.safe_load(COMPOSE.read_text()), env)
    return loaded


# ---- gateway ------------------------------------------------------------------------------


def gateway_routes(text: str) -> set[tuple[str, str, str]]:
    """(host label, location, upstream) for every proxied location of an nginx config."""
    routes = set()
    label = ""
    pending: tuple[str, str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if m := re.match(r"server_name\s+(?:~\^)?(\w+)\\?\.", line):
            label = m[1]
        elif m := re.match(r"location\s+(.+?)\s*\{\s*proxy_pass\s+http://\$?(\w+);", line):
            routes.add((label, m[1], m[2]))
        elif m := re.match(r"location\s+(.+?)\s*\{$", line):
            pending = (label, m[1])
        elif line == "internal;":
            pending = None  # reached only by the gateway's own redirects, never a route
        elif (m := re.match(r"proxy_pass\s+http://\$?(\w+);", line)) and pending:
            routes.add((*pending, m[1]))
    return routes


def route_table() -> set[tuple[str, str, str]]:
    """(host label, nginx location, service) of every route in deploy/gateway/routes.toml."""
    return {(r.host, r.location, r.service) for r in gateway.routes()}


def nginx_check(conf_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on a container's gateway config as the container sees it: problems.conf and
    the auth budget that gateway-env.sh writes into conf.d (the image's entrypoint runs it),
    temp files under /tmp, upstream Services resolved to this machine."""
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    subprocess.run(
        ["sh", str(GATEWAY_DIR / "gateway-env.sh")],
        env={"PATH": os.environ["PATH"], "GATEWAY_CONF_DIR": str(conf_d)},
        check=True,
    )
    text = re.sub(r"server \w+-api:", "server 127.0.0.1:", conf_text)  # no cluster DNS here
    # /tmp first: the checkout itself may live under /tmp (CI clones into mktemp -d)
    text = text.replace(" /tmp/", f" {tmp_path}/")
    text = text.replace("/etc/nginx/problems.conf", str(GATEWAY_DIR / "problems.conf"))
    text = text.replace("/etc/nginx/conf.d", str(conf_d))
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    return subprocess.run(
        ["nginx", "-t", "-q", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "e")],
        capture_output=True,
        text=True,
        check=False,
    )
