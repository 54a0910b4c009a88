"""A terminal client for tests: a real WebSocket through the gateway (Host terminal.<base>)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
from websockets.asyncio.client import ClientConnection, connect

from shardz_devstack.config import repo_root


def ws_connect(
    stack: Any,
    database_id: str,
    token: str | None = None,
    *,
    origin: str | None = None,
    port: int | None = None,
) -> Any:
    """Connect through the gateway (or straight to one terminal process on `port`)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    target = port or stack.config.gateway_port
    return connect(
        f"ws://{stack.host('terminal')}:{target}/v1/terminal/{database_id}",
        host="127.0.0.1",
        port=target,
        additional_headers=headers,
        origin=origin,  # type: ignore[arg-type]
        proxy=None,
        max_size=32 * 1024 * 1024,
        open_timeout=15,
        compression=None,
    )


class Term:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ready: dict[str, Any] = {}

    @classmethod
    async def open(cls, stack: Any, database_id: str, token: str, **kw: Any) -> Term:
        ws = await ws_connect(stack, database_id, token, **kw)
        term = cls(ws)
        term.ready = await term.recv()
        assert term.ready["type"] == "ready", term.ready
        return term

    async def recv(self, timeout: float = 30) -> dict[str, Any]:
        import asyncio

        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        message: dict[str, Any] = json.loads(raw)
        return message

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def start(self, sql: str) -> str:
        qid = uuid.uuid4().hex[:8]
        await self.send({"type": "query", "id": qid, "sql": sql})
        return qid

    async def answers(self, qid: str, timeout: float = 60) -> list[dict[str, Any]]:
        """Every message for `qid` up to and including its `done`."""
        out = []
        while True:
            message = await self.recv(timeout)
            if message.get("id") != qid:
                continue
            out.append(message)
            if message["type"] == "done":
                return out

    async def query(self, sql: str, timeout: float = 60) -> list[dict[str, Any]]:
        """Results and errors of `sql` (without the closing `done`)."""
        qid = await self.start(sql)
        return [m for m in await self.answers(qid, timeout) if m["type"] != "done"]

    async def one(self, sql: str) -> dict[str, Any]:
        (answer,) = [m for m in await self.query(sql) if m["type"] in ("result", "error")]
        return answer

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> Term:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def terminal_pid(stack: Any, session_id: str) -> int:
    """The pid of the terminal process that holds a session (from its session row)."""
    async with await psycopg.AsyncConnection.connect(stack.config.database_dsn("terminal")) as c:
        row = await (
            await c.execute("SELECT process FROM sessions WHERE id = %s", (session_id,))
        ).fetchone()
    assert row is not None
    return int(row[0].rsplit(":", 1)[1])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def tenant_admin(stack: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(stack.tenant_dsns[0], autocommit=True)


def wait_until(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def files_named(root: str, name: str) -> list[str]:
    found = []
    for dirpath, _, files in os.walk(root):
        if name in files:
            found.append(os.path.join(dirpath, name))
    return found


@contextlib.contextmanager
def terminal_process(stack: Any, **env: str) -> Iterator[int]:
    """An extra terminal API process with env overrides (e.g. a short statement timeout);
    yields its port, reached directly rather than through the gateway."""
    from tests.integration.helpers import free_port

    port = free_port()
    full = {**stack.prepared.process_env(), **env, "TERMINAL_PORT": str(port)}
    with open(stack.log_dir / f"extra-terminal-{port}.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shardz_terminal", "api"],
            env=full,
            cwd=repo_root(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        break
                assert proc.poll() is None, "the terminal process exited"
                assert time.monotonic() < deadline, "the terminal process is not ready"
                time.sleep(0.2)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
