"""The nginx gateway: render `deploy/gateway/nginx.conf.template` and give the argv to run it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from shardz_devstack.config import KNOWN_SERVICES, StackConfig, repo_root
from shardz_devstack.seaweed import s3_endpoint

TEMPLATE = repo_root() / "deploy" / "gateway" / "nginx.conf.template"
PLACEHOLDER_INDEX = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>SmallShardz</title></head>
<body><h1>SmallShardz</h1><p>The dashboard is not built yet.</p></body>
</html>
"""
_TMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def dashboard_root(config: StackConfig) -> Path:
    """A copy of `web/dashboard` under the stack's data folder, where nginx's workers can read
    it (a checkout in a 0700 home is out of their reach); a placeholder when nothing is built."""
    source = repo_root() / "web" / "dashboard"
    target = config.data_dir / "nginx" / "dashboard"
    shutil.rmtree(target, ignore_errors=True)
    if (source / "index.html").exists():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("node_modules"))
    else:
        target.mkdir(parents=True)
        (target / "index.html").write_text(PLACEHOLDER_INDEX)
    for path in (target, *target.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def render(config: StackConfig) -> str:
    run_dir = config.data_dir / "nginx"
    upstreams = "\n".join(
        f"    upstream {name} {{\n"
        + "".join(f"        server 127.0.0.1:{port};\n" for port in config.api_ports(name))
        + "        keepalive 64;\n    }"
        for name in KNOWN_SERVICES
    )
    # The master runs as root here; workers drop to nobody and get the temp dirs chowned.
    user_line = "user nobody nogroup;" if os.geteuid() == 0 else ""
    mime = Path("/etc/nginx/mime.types")
    replacements = {
        "@@USER_LINE@@": user_line,
        "@@WORKER_PROCESSES@@": str(config.gateway_workers),
        "@@RUN_DIR@@": str(run_dir),
        "@@MIME_TYPES@@": str(mime) if mime.exists() else str(TEMPLATE.parent / "mime.types"),
        "@@UPSTREAMS@@": upstreams,
        "@@LISTEN@@": f"{config.gateway_host}:{config.gateway_port}",
        "@@BASE@@": config.base_domain,
        "@@DASHBOARD_ROOT@@": str(dashboard_root(config)),
        "@@PROBLEMS@@": str(TEMPLATE.parent / "problems.conf"),
        "@@S3_HOST@@": urlsplit(s3_endpoint(config)).netloc,
    }
    text = TEMPLATE.read_text()
    for key, value in replacements.items():
        text = text.replace(key, value)
    return text


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
