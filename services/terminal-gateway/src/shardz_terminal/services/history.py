"""The statement history: written in batches off the query path, read newest first, purged
after the retention period by one worker at a time."""

from __future__ import annotations

import asyncio
import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import structlog
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

log = structlog.get_logger(__name__)

SQL_PREFIX_CHARS = 1024
PURGE_LOCK = 7412105  # pg_try_advisory_xact_lock key of the history purge
PAGE = 50
MAX_PENDING = 100_000


@dataclass(frozen=True)
class Entry:
    user_id: uuid.UUID
    database_id: uuid.UUID
    sql: str
    started_at: datetime
    elapsed_ms: float
    row_count: int | None
    sqlstate: str | None


class HistoryWriter:
    """Buffers entries and inserts them every `flush_seconds`; a crash loses at most that
    much history, never a query's latency."""

    def __init__(self, pool: AsyncConnectionPool[Any], flush_seconds: float) -> None:
        self.pool = pool
        self.flush_seconds = flush_seconds
        self._pending: list[Entry] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, entry: Entry) -> None:
        if len(self._pending) < MAX_PENDING:  # the database is away: shed rather than grow
            self._pending.append(entry)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="terminal-history")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            async with self.pool.connection() as conn, conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO statements (user_id, database_id, sql, started_at,"
                    " elapsed_ms, row_count, sqlstate) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [
                        (
                            e.user_id,
                            e.database_id,
                            e.sql[:SQL_PREFIX_CHARS].replace("\x00", ""),
                            e.started_at,
                            e.elapsed_ms,
                            e.row_count,
                            e.sqlstate,
                        )
                        for e in batch
                    ],
                )
        except (psycopg.Error, OSError) as exc:
            # kept for the next flush (the control plane may be briefly out of connections)
            log.warning("history not written yet", count=len(batch), error=type(exc).__name__)
            if len(batch) + len(self._pending) <= MAX_PENDING:
                self._pending = batch + self._pending


def encode_cursor(started_at: datetime, entry_id: int) -> str:
    raw = f"{started_at.isoformat()}|{entry_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    padded = cursor + "=" * (-len(cursor) % 4)
    stamp, _, entry_id = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
    return datetime.fromisoformat(stamp), int(entry_id)


async def page(
    conn: psycopg.AsyncConnection[Any],
    user_id: uuid.UUID,
    database_id: uuid.UUID | None,
    after: tuple[datetime, int] | None,
    limit: int = PAGE,
) -> tuple[list[tuple[Any, ...]], str | None]:
    where = [sql.SQL("user_id = %s")]
    params: list[Any] = [user_id]
    if database_id is not None:
        where.append(sql.SQL("database_id = %s"))
        params.append(database_id)
    if after is not None:
        where.append(sql.SQL("(started_at, id) < (%s, %s)"))
        params += list(after)
    query = sql.SQL(
        "SELECT id, database_id, sql, started_at, elapsed_ms, row_count, sqlstate"
        " FROM statements WHERE {} ORDER BY started_at DESC, id DESC LIMIT %s"
    ).format(sql.SQL(" AND ").join(where))
    cur = await conn.execute(query, [*params, limit + 1])
    rows = await cur.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1][3], rows[-1][0]) if more and rows else None
    return rows, next_cursor


async def purge(conn: psycopg.AsyncConnection[Any], retention_days: int) -> int | None:
    """Delete entries past retention; None when another worker holds the purge."""
    async with conn.transaction():
        cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (PURGE_LOCK,))
        row = await cur.fetchone()
        if not row or not row[0]:
            return None
        deleted = await conn.execute(
            "DELETE FROM statements WHERE started_at < now() - make_interval(days => %s)",
            (retention_days,),
        )
        return deleted.rowcount
