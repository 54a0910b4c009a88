"""RabbitMQ vhosts: the dev stack uses `/`, each test session a vhost of its own."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from urllib.parse import quote

from shardz_common import unroutable

RABBITMQCTL = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"


def amqp_url(host: str, port: int, vhost: str) -> str:
    path = "" if vhost == "/" else quote(vhost, safe="")
    return f"amqp://guest:guest@{host}:{port}/{path}"


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    # rabbitmqctl needs the node's Erlang cookie, which only root (and rabbitmq) can read.
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    return subprocess.run(  # noqa: S603 (our own argv)
        [*sudo, RABBITMQCTL, "-q", *args], capture_output=True, text=True, check=False, timeout=60
    )


def add_vhost(vhost: str) -> None:
    """The vhost (unless `/`), guest's rights on it, and the platform's policies."""
    if vhost != "/":
        result = _rabbitmqctl("add_vhost", vhost)
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise RuntimeError(f"rabbitmqctl add_vhost {vhost} failed: {result.stderr}")
        result = _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl set_permissions on {vhost} failed: {result.stderr}")
    set_policies(vhost)


def set_policies(vhost: str) -> None:
    """Unroutable events go to `platform.unroutable` (see shardz_common.unroutable)."""
    result = _rabbitmqctl(
        "set_policy", "-p", vhost, "--apply-to", "exchanges",
        unroutable.POLICY_NAME, unroutable.POLICY_PATTERN,
        json.dumps(unroutable.POLICY_DEFINITION),
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl set_policy on {vhost} failed: {result.stderr}")


def delete_vhost(vhost: str) -> None:
    if vhost != "/":
        _rabbitmqctl("delete_vhost", vhost)


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answers on {host}:{port}") from None
            time.sleep(0.1)
