"""`make dev`: prepare the stack, then run every process in the foreground under honcho."""

from __future__ import annotations

import fcntl
import os
import shlex
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from honcho.manager import Manager

from shardz_devstack.config import StackConfig, repo_root
from shardz_devstack.stack import commands, prepare, tenant_cluster


class AlreadyRunning(RuntimeError):
    pass


@contextmanager
def instance_lock(config: StackConfig) -> Iterator[None]:
    """Hold `<data>/<name>.lock` while the stack runs; the kernel frees it if we die."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    path = config.data_dir / f"{config.name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = Path(path).read_text().strip() or "?"
            raise AlreadyRunning(f"the {config.name} stack already runs (pid {pid})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def lock_holder(config: StackConfig) -> int | None:
    """The pid of a running stack, or None."""
    path = config.data_dir / f"{config.name}.lock"
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        text = path.read_text().strip()
        return int(text) if text.isdigit() else -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def run_dev(config: StackConfig) -> int:
    with instance_lock(config):
        print(f"preparing the {config.name} stack in {config.data_dir} ...", flush=True)
        stack = prepare(config, overrides=os.environ)
        env = stack.process_env()
        manager = Manager()
        for name, argv in commands(stack).items():
            manager.add_process(name, shlex.join(argv), env=env, cwd=str(repo_root()))
        base, port = config.base_domain, config.gateway_port
        print(
            f"\n  gateway    http://api.{base}:{port}  (dashboard.{base}, terminal.{base})\n"
            f"  admin      {stack.env['IDENTITY_BOOTSTRAP_ADMIN_EMAIL']} / "
            f"{stack.env['IDENTITY_BOOTSTRAP_ADMIN_PASSWORD']}\n"
            f"  services   {', '.join(config.services) or '(none installed)'}\n"
            f"  secrets    {config.secrets_file}\n",
            flush=True,
        )
        try:
            manager.loop()
        finally:
            for cluster in stack.clusters:
                cluster.stop()
        return manager.returncode or 0


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def status(config: StackConfig) -> int:
    """Print what answers; exit 0 when the stack's lock is held."""
    pid = lock_holder(config)
    print(f"{config.name} stack: " + (f"running (pid {pid})" if pid else "not running"))
    rows = [(f"{s} api", config.port(s)) for s in config.services]
    rows += [("gateway", config.gateway_port), ("s3", config.seaweed.s3)]
    rows += [("tenant-pg local-1", config.tenant_pg_port)]
    for label, port in rows:
        print(f"  {label:<20} :{port:<6} {'up' if _answers(port) else 'down'}")
    return 0 if pid else 1


def stop_tenant(config: StackConfig) -> None:
    secrets = {"DEVSTACK_TENANT_PG_PASSWORD": ""}
    tenant_cluster(config, secrets).stop()


def main_dev(config: StackConfig) -> int:
    try:
        return run_dev(config)
    except AlreadyRunning as exc:
        print(exc, file=sys.stderr)
        return 2
    except (RuntimeError, TimeoutError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
