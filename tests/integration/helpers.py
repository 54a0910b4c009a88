from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg

from shardz_devstack.config import repo_root

PASSWORD = "correct horse battery"


def new_email() -> str:
    return f"u-{uuid.uuid4().hex[:12]}@example.com"


async def signup(gateway: httpx.AsyncClient, email: str | None = None) -> dict[str, Any]:
    resp = await gateway.post(
        "/v1/auth/signup", json={"email": email or new_email(), "password": PASSWORD}
    )
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    assert body["status"] == status and body["code"] == code
    assert {"type", "title", "detail", "request_id"} <= body.keys()
    assert "Traceback" not in resp.text and "SELECT" not in resp.text
    return body


async def create_db(
    gateway: httpx.AsyncClient, token: str, name: str | None = None, **extra: Any
) -> dict[str, Any]:
    body = {"name": name or f"db-{uuid.uuid4().hex[:8]}", **extra}
    resp = await gateway.post("/v1/databases", json=body, headers=bearer(token))
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


async def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.1) -> Any:
    """Poll an async predicate until it returns something truthy."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


async def admin_token(gateway: httpx.AsyncClient, env: dict[str, str]) -> str:
    resp = await gateway.post(
        "/v1/auth/login",
        json={
            "email": env["IDENTITY_BOOTSTRAP_ADMIN_EMAIL"],
            "password": env["IDENTITY_BOOTSTRAP_ADMIN_PASSWORD"],
        },
    )
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["access_token"]
    return token


async def publish_event(
    amqp_url: str, type_: str, data: dict[str, Any], time: str | None = None
) -> str:
    """Publish a CloudEvent the way a service's relay would (e.g. billing's, before it exists)."""
    import json

    import aio_pika

    event_id = str(uuid.uuid4())
    body = {
        "specversion": "1.0",
        "id": event_id,
        "source": "tests",
        "type": type_,
        "datacontenttype": "application/json",
        "data": data,
    }
    if time is not None:
        body["time"] = time
    conn = await aio_pika.connect(amqp_url)
    try:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            "platform.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        await exchange.publish(
            aio_pika.Message(
                json.dumps(body).encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            ),
            routing_key=type_,
        )
    finally:
        await conn.close()
    return event_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def provisioner_process(stack: Any, command: str, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """An extra provisioner process (api or worker) on the test stack, with env overrides."""
    with service_process(stack, "provisioner", command, **env) as proc:
        yield proc


@contextlib.contextmanager
def faulty_provisioner(stack: Any, step: str, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """A provisioner API that dies at saga step `step` (armed in-process by a launcher)."""
    launcher = [str(repo_root() / "tests" / "integration" / "faulty_provisioner.py"), step]
    with service_process(stack, "provisioner", "api", launcher=launcher, **env) as proc:
        yield proc


@contextlib.contextmanager
def service_process(
    stack: Any,
    service: str,
    command: str,
    launcher: list[str] | None = None,
    log_name: str | None = None,
    **env: str,
) -> Iterator[subprocess.Popen[bytes]]:
    """An extra process (api or worker) of `service` on the test stack, with env overrides."""
    full = {**stack.prepared.process_env(), **env}
    port = env.get(f"{service.upper()}_PORT", "w")
    path = stack.log_dir / f"extra-{service}-{log_name or f'{command}-{port}'}.log"
    entry = launcher or ["-m", f"shardz_{service}"]
    with open(path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, *entry, command],
            env=full,
            cwd=repo_root(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:  # a slow shutdown is not what this tests
                    proc.kill()
                    proc.wait()


async def wait_http(url: str) -> None:
    async def up() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            async with httpx.AsyncClient() as c:
                return (await c.get(url)).status_code == 200
        return False

    await wait_for(up, timeout=30)


async def can_login(uri: str) -> bool:
    """Whether a database's connection URI logs in now (and answers a query)."""
    try:
        async with await psycopg.AsyncConnection.connect(uri, connect_timeout=5) as conn:
            await conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False
