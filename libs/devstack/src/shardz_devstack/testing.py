"""A whole platform for a pytest session: `start_test_stack()` and the `stack`/`gateway` fixtures.

Use from any conftest.py::

    from shardz_devstack.testing import gateway, stack  # noqa: F401  (pytest fixtures)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from shardz_devstack import rabbit
from shardz_devstack.config import StackConfig, repo_root
from shardz_devstack.dev import AlreadyRunning, instance_lock
from shardz_devstack.postgres import TenantCluster, clusters_json
from shardz_devstack.preflight import busy_ports
from shardz_devstack.stack import PreparedStack, commands, prepare, start_tenant_cluster

TEST_SLOTS = 5  # benchmarks use slots 5 and up
READY_TIMEOUT = float(os.environ.get("DEVSTACK_READY_TIMEOUT", "90"))


@dataclass
class RunningStack:
    """A started test platform. Everything it started, `stop()` ends."""

    config: StackConfig
    prepared: PreparedStack
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _exit: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def gateway_url(self) -> str:
        return self.config.gateway_url

    @property
    def base_domain(self) -> str:
        return self.config.base_domain

    def host(self, name: str = "api") -> str:
        """The Host header of a public host: `api`, `terminal` or `dashboard`."""
        return f"{name}.{self.base_domain}"

    @property
    def internal_urls(self) -> dict[str, str]:
        return {s: self.config.internal_url(s) for s in self.config.services}

    @property
    def env(self) -> dict[str, str]:
        return self.prepared.env

    @property
    def tenant_clusters(self) -> list[TenantCluster]:
        return self.prepared.clusters

    @property
    def tenant_dsns(self) -> list[str]:
        return [c.admin_dsn for c in self.prepared.clusters]

    @property
    def log_dir(self) -> Path:
        return self.config.data_dir / "test-logs"

    def log_tail(self, name: str, chars: int = 4000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def start_extra_cluster(
        self, index: int = 2, port: int | None = None, settings: dict[str, str] | None = None
    ) -> TenantCluster:
        """Start an empty tenant cluster `local-<index>` (not registered with the provisioner:
        its registration is `cluster.registration()`, stopped with the stack); `settings`
        override postgresql.conf's."""
        cluster = start_tenant_cluster(self.config, self.prepared.secrets, index, port, settings)
        self.prepared.clusters.append(cluster)
        return cluster

    def clusters_json(self) -> str:
        return clusters_json(self.prepared.clusters)

    def stop(self) -> None:
        for proc in self.processes.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        self.processes.clear()
        _pid_file(self.config).unlink(missing_ok=True)
        for cluster in self.prepared.clusters:
            cluster.stop()
        rabbit.delete_vhost(self.config.amqp_vhost)
        self._exit.close()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)


def _pid_file(config: StackConfig) -> Path:
    return config.data_dir / "test-pids"


def _kill_leftovers(config: StackConfig) -> None:
    """End process groups that a crashed earlier session left behind (they hold our ports)."""
    path = _pid_file(config)
    if not path.exists():
        return
    for line in path.read_text().split():
        with contextlib.suppress(OSError, ValueError):
            cmdline = Path(f"/proc/{int(line)}/cmdline").read_bytes().decode(errors="replace")
            if "shardz_" in cmdline or str(config.data_dir) in cmdline:  # not a reused pid
                os.killpg(int(line), signal.SIGKILL)
    path.unlink()
    time.sleep(0.5)


def _wait_ready(running: RunningStack) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    checks: list[tuple[str, str, dict[str, str]]] = [
        (f"{s}-api", f"{url}/readyz", {}) for s, url in running.internal_urls.items()
    ]
    checks += [
        (f"{s}-api-2", f"http://127.0.0.1:{running.config.api_ports(s)[1]}/readyz", {})
        for s in running.config.second_api_services()
    ]
    checks.append(("gateway", f"{running.gateway_url}/", {"Host": running.host("dashboard")}))
    with httpx.Client(timeout=2.0) as client:
        for name, url, headers in checks:
            while True:
                proc = running.processes[name]
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited ({proc.returncode}):\n{running.log_tail(name)}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(url, headers=headers).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} not ready:\n{running.log_tail(name)}")
                time.sleep(0.2)
    rabbit.wait_for_port("127.0.0.1", running.config.seaweed.s3, timeout=READY_TIMEOUT)
    if "paystack" in running.processes:
        rabbit.wait_for_port("127.0.0.1", running.config.paystack_port, timeout=READY_TIMEOUT)


def _free_slot(exit_stack: contextlib.ExitStack) -> StackConfig:
    """The first test slot no other pytest session holds and whose ports are free (another
    user's stacks keep their locks elsewhere); its lock joins `exit_stack`."""
    for slot in range(TEST_SLOTS):
        config = StackConfig.test(slot)
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(instance_lock(config))
            except AlreadyRunning:
                continue
            _kill_leftovers(config)
            if busy_ports(config.listen_ports()):
                continue
            exit_stack.enter_context(held.pop_all())
            return config
    raise AlreadyRunning(f"all {TEST_SLOTS} test stack slots are in use")


def start_test_stack(config: StackConfig | None = None, **changes: Any) -> RunningStack:
    """Databases, vhost, tenant cluster, S3, gateway and every service, ready to answer.
    Without a config it takes the first free test slot (see `StackConfig.test`), with
    `changes` applied to it (e.g. `control_dsn=` for another control-plane server)."""
    exit_stack = contextlib.ExitStack()
    try:
        if config is None:
            config = dataclasses.replace(_free_slot(exit_stack), **changes)
        else:
            exit_stack.enter_context(instance_lock(config))
            _kill_leftovers(config)
        prepared = prepare(config)
    except BaseException:
        exit_stack.close()
        raise
    running = RunningStack(prepared.config, prepared, _exit=exit_stack)
    try:
        shutil.rmtree(running.log_dir, ignore_errors=True)
        running.log_dir.mkdir(parents=True)
        env = prepared.process_env()
        for name, argv in commands(prepared).items():
            with open(running.log_dir / f"{name}.log", "wb") as log:
                running.processes[name] = subprocess.Popen(  # noqa: S603
                    argv,
                    env=env,
                    cwd=repo_root(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        _pid_file(config).write_text("\n".join(str(p.pid) for p in running.processes.values()))
        _wait_ready(running)
    except BaseException:
        running.stop()
        raise
    return running


@pytest.fixture(scope="session")
def stack() -> Iterator[RunningStack]:
    """The test platform, started on first use and stopped at the end of the session."""
    running = start_test_stack()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def gateway(stack: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the gateway that talks to `api.<base>` unless a request sets another Host
    (`headers={"Host": stack.host("terminal")}`)."""
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, headers={"Host": stack.host("api")}, timeout=30.0
    ) as client:
        yield client
