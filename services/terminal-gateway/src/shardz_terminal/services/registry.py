"""Live sessions of this process, and their rows in the terminal's database.

The per-user cap counts rows of every terminal process: a claim takes a per-user advisory
lock, forgets rows whose process stopped refreshing them (killed), counts, and inserts.
Events that must end sessions (handled by the worker) arrive as NOTIFY on `CLOSE_CHANNEL`,
which every API process LISTENs to."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

log = structlog.get_logger(__name__)

CLOSE_CHANNEL = "terminal_close"
CLOSE_FIELDS = ("database_id", "user_id", "key_id")


@dataclass
class Live:
    id: uuid.UUID
    user_id: uuid.UUID
    database_id: uuid.UUID
    key_id: uuid.UUID | None
    close: Callable[[int, str], Awaitable[None]]


def close_notice(field: str, value: uuid.UUID, reason: str) -> str:
    return json.dumps({"field": field, "value": str(value), "reason": reason})


class SessionRegistry:
    def __init__(
        self, pool: AsyncConnectionPool[Any], dsn: str, cap: int, lease_seconds: float
    ) -> None:
        self.pool = pool
        self.dsn = dsn
        self.cap = cap
        self.lease = lease_seconds
        self.process = f"{socket.gethostname()}:{os.getpid()}"[:120]
        self.live: dict[uuid.UUID, Live] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._heartbeat(), name="terminal-heartbeat"),
            asyncio.create_task(self._listen(), name="terminal-listen"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.live:
            ids = list(self.live)
            async with self.pool.connection() as conn:
                await conn.execute("DELETE FROM sessions WHERE id = ANY(%s)", (ids,))

    async def claim(
        self, user_id: uuid.UUID, database_id: uuid.UUID, key_id: uuid.UUID | None
    ) -> uuid.UUID | None:
        """A session slot for the user, or None when the user holds `cap` sessions already."""
        session_id = uuid.uuid4()
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('terminal-user:' || %s, 0))",
                (str(user_id),),
            )
            await conn.execute(
                "DELETE FROM sessions WHERE user_id = %s"
                " AND heartbeat_at < now() - make_interval(secs => %s)",
                (user_id, self.lease),
            )
            cur = await conn.execute("SELECT count(*) FROM sessions WHERE user_id = %s", (user_id,))
            row = await cur.fetchone()
            if row is not None and row[0] >= self.cap:
                return None
            await conn.execute(
                "INSERT INTO sessions (id, user_id, database_id, key_id, process)"
                " VALUES (%s, %s, %s, %s, %s)",
                (session_id, user_id, database_id, key_id, self.process),
            )
        return session_id

    def attach(self, live: Live) -> None:
        self.live[live.id] = live

    async def release(self, session_id: uuid.UUID) -> None:
        self.live.pop(session_id, None)
        try:
            async with self.pool.connection() as conn:
                await conn.execute("DELETE FROM sessions WHERE id = %s", (session_id,))
        except psycopg.Error as exc:  # the lease expires it anyway
            log.warning("session row not removed", error=type(exc).__name__)

    async def close_matching(self, field: str, value: str, reason: str) -> int:
        if field not in CLOSE_FIELDS:
            return 0
        hits = [s for s in list(self.live.values()) if str(getattr(s, field)) == value]
        await asyncio.gather(*(s.close(4403, reason) for s in hits), return_exceptions=True)
        return len(hits)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            if not self.live:
                continue
            try:
                async with self.pool.connection() as conn:
                    await conn.execute(
                        "UPDATE sessions SET heartbeat_at = now() WHERE id = ANY(%s)",
                        (list(self.live),),
                    )
            except psycopg.Error as exc:
                log.warning("session heartbeat failed", error=type(exc).__name__)

    async def _listen(self) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CLOSE_CHANNEL}")
                    async for note in conn.notifies():
                        await self._on_notice(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("close notices unavailable; reconnecting", error=repr(exc))
                await asyncio.sleep(1)

    async def _on_notice(self, payload: str) -> None:
        try:
            data = json.loads(payload)
            closed = await self.close_matching(
                str(data["field"]), str(data["value"]), str(data["reason"])[:100]
            )
        except (ValueError, KeyError, TypeError):
            log.warning("malformed close notice")
            return
        if closed:
            log.info("sessions closed", count=closed, reason=data["reason"])
