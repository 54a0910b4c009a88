"""The nginx gateway: render `deploy/gateway/nginx.conf.j2` from the route table
(`deploy/gateway/routes.toml`) for the local platform, compose and Kubernetes, and give the
argv to run the local one."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import jinja2

from shardz_common.settings import PlatformSettings
from shardz_devstack import dashboard
from shardz_devstack.config import KNOWN_SERVICES, StackConfig, repo_root
from shardz_devstack.seaweed import s3_endpoint

GATEWAY_DIR = repo_root() / "deploy" / "gateway"
TEMPLATE = GATEWAY_DIR / "nginx.conf.j2"
ROUTES = GATEWAY_DIR / "routes.toml"
COMPOSE_CONFIG = GATEWAY_DIR / "nginx.compose.conf"
K8S_CONFIG = GATEWAY_DIR / "nginx.k8s.conf"
AUTH_RATE_SETTING = "PLATFORM_AUTH_RATE_LIMIT_PER_MINUTE"
AUTH_RATE_DEFAULT = PlatformSettings.model_fields["auth_rate_limit_per_minute"].default
PLACEHOLDER_INDEX = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>SmallShardz</title></head>
<body><h1>SmallShardz</h1><p>The dashboard is not built yet.</p></body>
</html>
"""
_TMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
_KINDS = ("plain", "auth", "stream", "websocket")


@dataclass(frozen=True)
class Route:
    host: str
    path: str
    service: str
    kind: str = "plain"
    exact: bool = False
    regex: str = ""  # narrows `path` (a prefix routed to the same service) to tune proxying

    @property
    def location(self) -> str:
        """The nginx location: exact, a pattern, or the path and everything under it (not
        `/v1/authx`)."""
        if self.exact:
            return f"= {self.path}"
        if self.regex:
            return f"~ {self.regex}"
        return f"~ ^{self.path.rstrip('/')}(/|$)"


def routes() -> list[Route]:
    """The route table, checked: known services and kinds, absolute paths, nothing internal."""
    table = [Route(**entry) for entry in tomllib.loads(ROUTES.read_text())["route"]]
    for route in table:
        if route.service not in KNOWN_SERVICES or route.kind not in _KINDS:
            raise ValueError(f"routes.toml: unknown service or kind in {route}")
        if not route.path.startswith("/") or "internal" in route.path + route.regex:
            raise ValueError(f"routes.toml: {route.path!r} cannot be a public route")
        if route.regex and not route.regex.startswith(f"^{route.path.rstrip('/')}/"):
            raise ValueError(f"routes.toml: {route.regex!r} must narrow {route.path!r}")
    return table


@dataclass(frozen=True)
class Tls:
    """http-level TLS directives and each server's extra listen (the catch-all's first)."""

    http: str = ""
    listen: str = ""
    listen_default: str = ""


@dataclass(frozen=True)
class Target:
    """What differs between the local, compose and Kubernetes gateways; the template reads
    these."""

    kind: str  # local, compose or k8s
    listen: str
    worker_processes: str
    error_log: str
    mime_types: str
    problems: str
    dashboard_root: str
    auth_limit: str
    api_docs_root: str = "/usr/share/nginx/api-docs"
    # host:port of the object store for download handoffs (/.storage-backend/); "" for none
    storage_backend: str = ""
    tls: Tls = field(default_factory=lambda: Tls())
    auth_rate: int = AUTH_RATE_DEFAULT
    user_line: str = ""
    pid: str = ""
    temp_dir: str = ""
    upstreams: dict[str, list[str]] = field(default_factory=dict)
    backends: dict[str, str] = field(default_factory=dict)
    hosts: dict[str, list[Route]] = field(default_factory=dict)
    base_domain: str = "localhost"

    @property
    def title(self) -> str:
        return {"compose": " for docker-compose.yml", "k8s": " for Kubernetes"}.get(self.kind, "")

    def server_name(self, host: str) -> str:
        return f"{host}.{self.base_domain}" if self.kind == "local" else f"~^{host}\\."

    def proxy(self, service: str) -> str:
        return f"http://${service}" if self.kind == "compose" else f"http://{service}"


def _by_host() -> dict[str, list[Route]]:
    hosts: dict[str, list[Route]] = {}
    for route in routes():
        hosts.setdefault(route.host, []).append(route)
    return hosts


def _render(target: Target) -> str:
    env = jinja2.Environment(  # noqa: S701 (nginx config, not HTML)
        loader=jinja2.FileSystemLoader(GATEWAY_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template(TEMPLATE.name).render(t=target)


def auth_rate(config: StackConfig) -> int:
    rate = int(config.settings.get(AUTH_RATE_SETTING) or AUTH_RATE_DEFAULT)
    if rate < 1:
        raise ValueError(f"{AUTH_RATE_SETTING} must be a positive integer, not {rate}")
    return rate


def render(config: StackConfig) -> str:
    """The local gateway of `config` (dev or a test slot)."""
    run_dir = config.data_dir / "nginx"
    mime = Path("/etc/nginx/mime.types")
    rate = auth_rate(config)
    backend = urlsplit(s3_endpoint(config)).netloc
    target = Target(
        kind="local",
        # The master runs as root here; workers drop to nobody and get the temp dirs chowned.
        user_line="user nobody nogroup;" if os.geteuid() == 0 else "",
        worker_processes=str(config.gateway_workers),
        pid=str(run_dir / "nginx.pid"),
        error_log=str(run_dir / "error.log"),
        temp_dir=str(run_dir / "tmp"),
        mime_types=str(mime) if mime.exists() else str(GATEWAY_DIR / "mime.types"),
        problems=str(GATEWAY_DIR / "problems.conf"),
        dashboard_root=str(dashboard_root(config)),
        api_docs_root=str(api_docs_root(config)),
        listen=f"{config.gateway_host}:{config.gateway_port}",
        tls=_local_tls(config),
        base_domain=config.base_domain,
        auth_rate=rate,
        auth_limit=f"limit_req zone=auth burst={rate - 1} nodelay;",
        upstreams={
            **{
                name: [f"127.0.0.1:{port}" for port in config.api_ports(name)]
                for name in KNOWN_SERVICES
            },
            "storage_backend": [backend],
        },
        storage_backend=backend,
        hosts=_by_host(),
    )
    return _render(target)


def _local_tls(config: StackConfig) -> Tls:
    if not config.tls_cert:
        return Tls()
    listen = f"listen {config.gateway_host}:{config.tls_port} ssl"
    return Tls(
        http=f"ssl_certificate {config.tls_cert};\n    ssl_certificate_key {config.tls_key};",
        listen=f"{listen};",
        listen_default=f"{listen} default_server;",
    )


# In containers, gateway-env.sh (run by the image's entrypoint) writes these: empty unless a
# certificate is mounted at /etc/nginx/tls/tls.crt (and tls.key).
_CONTAINER_TLS = Tls(
    listen="include /etc/nginx/conf.d/tls.listen;",
    listen_default="include /etc/nginx/conf.d/tls.listen-default;",
)


def render_compose() -> str:
    """nginx.compose.conf: the same routes, pointed at compose's service names."""
    target = Target(
        kind="compose",
        worker_processes="auto",
        pid="/tmp/nginx.pid",  # noqa: S108 (the container's tmpfs; it runs unprivileged)
        temp_dir="/tmp",  # noqa: S108
        error_log="/dev/stderr",
        mime_types="/etc/nginx/mime.types",
        problems="/etc/nginx/problems.conf",
        dashboard_root="/usr/share/nginx/html",
        listen="8080",
        auth_limit="include /etc/nginx/conf.d/auth-limit.rules;",
        tls=_CONTAINER_TLS,
        backends={name: f"{name}-api:{port}" for name, port in KNOWN_SERVICES.items()},
        # storage in compose hands download bodies to the gateway (STORAGE_DOWNLOAD_HANDOFF_
        # LOCATION); on Kubernetes the S3 endpoint is the deployment's: storage streams them
        storage_backend="minio:9000",
        hosts=_by_host(),
    )
    return _render(target)


def render_k8s() -> str:
    """nginx.k8s.conf, baked into the gateway image (deploy/docker/gateway.Dockerfile): the
    same routes, pointed at the platform's Kubernetes Services; it runs as a non-root user with
    a read-only root (temp files and pid under /tmp)."""
    target = Target(
        kind="k8s",
        worker_processes="auto",
        pid="/tmp/nginx.pid",  # noqa: S108 (the pod's own emptyDir)
        temp_dir="/tmp",  # noqa: S108
        error_log="/dev/stderr",
        mime_types="/etc/nginx/mime.types",
        problems="/etc/nginx/problems.conf",
        dashboard_root="/usr/share/nginx/html",
        listen="8080",
        auth_limit="include /etc/nginx/conf.d/auth-limit.rules;",
        tls=_CONTAINER_TLS,
        upstreams={name: [f"{name}-api:{port}"] for name, port in KNOWN_SERVICES.items()},
        hosts=_by_host(),
    )
    return _render(target)


GENERATED = {COMPOSE_CONFIG: render_compose, K8S_CONFIG: render_k8s}


def write_generated() -> list[Path]:
    """Rewrite the committed gateway configs (compose, Kubernetes) from the template."""
    for path, make in GENERATED.items():
        path.write_text(make())
    return list(GENERATED)


def dashboard_root(config: StackConfig) -> Path:
    """A copy of the built dashboard (web/dashboard/dist, built first when its sources changed)
    under the stack's data folder, where nginx's workers can read it (a checkout in a 0700
    home is out of their reach); a placeholder when there is no dashboard source."""
    built = dashboard.build()
    target = config.data_dir / "nginx" / "dashboard"
    shutil.rmtree(target, ignore_errors=True)
    if built is not None and (built / "index.html").exists():
        shutil.copytree(built, target, ignore=shutil.ignore_patterns(".source-hash"))
    else:
        target.mkdir(parents=True)
        (target / "index.html").write_text(PLACEHOLDER_INDEX)
    for path in (target, *target.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def api_docs_root(config: StackConfig) -> Path:
    """The API reference (web/api-docs, built with npm over docs/api/openapi.json) copied where
    nginx's workers can read it."""
    source = repo_root() / "web" / "api-docs"
    target = config.data_dir / "nginx" / "api-docs"
    with dashboard.build_lock(source):
        dashboard.npm_build(source)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source / "dist", target)
    for path in (target, *target.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def write_config(config: StackConfig) -> Path:
    """Render into `<data>/nginx/nginx.conf`, check it with `nginx -t`, return its path."""
    run_dir = config.data_dir / "nginx"
    for name in _TMP_DIRS:
        (run_dir / "tmp" / name).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(run_dir / "tmp" / name, "nobody", "nogroup")
    path = run_dir / "nginx.conf"
    path.write_text(render(config))
    check = subprocess.run(  # noqa: S603 (our own argv)
        [nginx_binary(), "-t", "-q", "-c", str(path), "-e", str(run_dir / "error.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        raise RuntimeError(f"nginx rejected {path}:\n{check.stderr}")
    return path


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_command(config: StackConfig) -> list[str]:
    path = write_config(config)
    run_dir = config.data_dir / "nginx"
    return [
        nginx_binary(),
        "-c", str(path),
        "-e", str(run_dir / "error.log"),
        "-g", "daemon off;",
    ]  # fmt: skip
