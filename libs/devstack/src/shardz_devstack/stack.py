"""Everything a stack needs before its processes start, and the processes themselves."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from shardz_devstack import control, gateway, rabbit, seaweed
from shardz_devstack import preflight as preflight_checks
from shardz_devstack.config import StackConfig, repo_root, state_root
from shardz_devstack.environment import service_env
from shardz_devstack.postgres import TenantCluster, ensure_databases
from shardz_devstack.secretsfile import load_or_create


@dataclass
class PreparedStack:
    config: StackConfig
    secrets: dict[str, str]
    clusters: list[TenantCluster]
    env: dict[str, str] = field(default_factory=dict)

    def process_env(self) -> dict[str, str]:
        return {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}


def tenant_cluster(
    config: StackConfig,
    secrets: Mapping[str, str],
    index: int = 1,
    port: int | None = None,
    settings: Mapping[str, str] | None = None,
) -> TenantCluster:
    """Cluster `local-<index>`; extra clusters default to the next ports after the first."""
    return TenantCluster(
        name=f"local-{index}",
        data_dir=config.tenant_dir(index),
        port=port if port is not None else config.tenant_pg_port + index - 1,
        password=secrets["DEVSTACK_TENANT_PG_PASSWORD"],
        settings=dict(settings or {}),
    )


def start_tenant_cluster(
    config: StackConfig,
    secrets: Mapping[str, str],
    index: int = 1,
    port: int | None = None,
    settings: Mapping[str, str] | None = None,
) -> TenantCluster:
    """Initialise (fresh for a test stack) and start a tenant cluster; reuse a running one."""
    cluster = tenant_cluster(config, secrets, index, port, settings)
    if config.fresh:
        cluster.destroy()
    cluster.start()
    return cluster


def preflight(config: StackConfig, secrets: Mapping[str, str], *, check_ports: bool) -> None:
    """Refuse to start, naming the cause, before anything of this stack runs."""
    ports = dict(config.listen_ports()) if check_ports else {}
    if not tenant_cluster(config, secrets).is_running():  # a running one of ours is reused
        ports["tenant-pg local-1"] = config.tenant_pg_port
    busy = preflight_checks.busy_ports(ports)
    if busy:
        raise RuntimeError(f"ports of the {config.name} stack are in use: {'; '.join(busy)}")
    if os.geteuid() == 0:  # initdb/postgres run as `postgres`, nginx's workers as `nobody`
        preflight_checks.require_reachable(config.tenant_dir(), "postgres", "tenant cluster data")
        preflight_checks.require_reachable(config.data_dir / "nginx", "nobody", "gateway files")


def prepare(
    config: StackConfig, overrides: Mapping[str, str] | None = None, *, check_ports: bool = True
) -> PreparedStack:
    """Secrets, vhost, control-plane databases, tenant cluster, migrations."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    secrets = load_or_create(config.secrets_file)
    preflight(config, secrets, check_ports=check_ports)
    if not config.control_dsn:
        dsn = control.ensure_role(control.credentials_file(state_root()))
        config = dataclasses.replace(config, control_dsn=dsn)
    if config.fresh:
        shutil.rmtree(config.data_dir / "seaweedfs", ignore_errors=True)
    rabbit.wait_for_port(config.amqp_host, config.amqp_port)
    rabbit.add_vhost(config.amqp_vhost)
    ensure_databases(
        config.control_dsn, [config.database_name(s) for s in config.services], fresh=config.fresh
    )
    clusters = [start_tenant_cluster(config, secrets)]
    stack = PreparedStack(config, secrets, clusters)
    stack.env = service_env(config, secrets, clusters, overrides)
    migrate(stack)
    return stack


def migrate(stack: PreparedStack) -> None:
    """Run every service's migrations to head, in parallel; fail with the first error output."""
    env = stack.process_env()

    def run(service: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        cmd = [sys.executable, "-m", f"shardz_{service}", "migrate"]
        done = subprocess.run(  # noqa: S603 (our own argv)
            cmd, env=env, cwd=repo_root(), capture_output=True, text=True, check=False
        )
        return service, done

    with ThreadPoolExecutor(max_workers=max(1, len(stack.config.services))) as pool:
        results = list(pool.map(run, stack.config.services))
    for service, done in results:
        if done.returncode != 0:
            raise RuntimeError(
                f"{service} migrate failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )


def commands(stack: PreparedStack) -> dict[str, list[str]]:
    """Process name -> argv: the API and worker of each service, the gateway and the S3 store."""
    procs: dict[str, list[str]] = {}
    for service in stack.config.services:
        for role in ("api", "worker"):
            procs[f"{service}-{role}"] = [sys.executable, "-m", f"shardz_{service}", role]
    for service in stack.config.second_api_services():
        port = stack.config.api_ports(service)[1]
        procs[f"{service}-api-2"] = [
            "/usr/bin/env",
            f"{service.upper()}_PORT={port}",
            *procs[f"{service}-api"],
        ]
    procs["gateway"] = gateway.nginx_command(stack.config)
    procs["s3"] = seaweed.weed_command(stack.config, stack.secrets)
    if stack.env.get("PAYSTACK_STANDIN_SECRET_KEY"):
        config = stack.config
        procs["paystack"] = [
            sys.executable,
            "-m",
            "shardz_devstack.paystack_standin",
            "--port",
            str(config.paystack_port),
            "--webhook-url",
            f"{config.gateway_url}/v1/billing/webhooks/paystack",
            "--webhook-host",
            f"api.{config.base_domain}",
        ]
    return procs
