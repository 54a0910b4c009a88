"""A streamed upload: quota held first, the body sent to the store in parts as it arrives
(never whole in memory or on disk), the index row written last, in one transaction that
also re-accounts the space. Anything that goes wrong gives the reservation back and leaves
a deletion intent for whatever reached the store."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import psycopg
import structlog
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.errors import AccountSuspended, QuotaExceeded, Unauthenticated, Unavailable
from shardz_storage.config import StorageSettings
from shardz_storage.services import quota, spaces
from shardz_storage.services.backend import Backend, Body

log = structlog.get_logger(__name__)
MAX_PARTS = 9000  # S3 allows 10,000


@dataclass(frozen=True)
class Stored:
    key: str
    size: int
    etag: str
    content_type: str
    updated_at: datetime
    created: bool


class Upload:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        pool: AsyncConnectionPool[AsyncConnection],
        backend: Backend,
        settings: StorageSettings,
        user_id: uuid.UUID,
        expected: int | None,
    ) -> None:
        self.sessions = sessions
        self.pool = pool
        self.backend = backend
        self.settings = settings
        self.user_id = user_id
        self.expected = expected
        self.part_size = settings.part_size_bytes
        if expected is not None:
            self.part_size = max(self.part_size, -(-expected // MAX_PARTS))
        self.reservation: quota.Reservation | None = None
        self.received = 0
        self._buffer = Body()
        self._upload_id: str | None = None
        self._parts: list[asyncio.Task[str]] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._beat_timer: asyncio.TimerHandle | None = None

    async def start(self, key: str | None) -> None:
        """Hold the quota: the whole Content-Length, or a first step when it is unknown."""
        first = self.expected if self.expected is not None else 0
        self.reservation = await quota.reserve(
            self.sessions, self.pool, self.settings, self.user_id, key, first
        )
        # Most uploads end long before their reservation could expire: a timer (no task per
        # request) starts the heartbeat only for those that last.
        self._beat_timer = asyncio.get_running_loop().call_later(
            self.settings.reservation_ttl_seconds / 3, self._start_beat
        )

    def _start_beat(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat())

    def _stop_beat(self) -> None:
        if self._beat_timer is not None:
            self._beat_timer.cancel()
        if self._heartbeat is not None:
            self._heartbeat.cancel()

    async def feed(self, data: bytes) -> None:
        r = self.reservation
        assert r is not None
        self.received += len(data)
        if self.received > r.allowance:
            if self.expected is not None:  # more than announced: the server would not allow it
                raise QuotaExceeded("the body is longer than its Content-Length")
            await quota.grow(self.sessions, self.settings, r, self.received)
        self._buffer.add(data)
        if self._buffer.size >= self.part_size:
            await self._send_part()

    async def _send_part(self) -> None:
        r = self.reservation
        assert r is not None
        if self._upload_id is None:
            self._upload_id = await self.backend.create_multipart(r.backend_key)
            await self._record_upload_id()
        # bounded parallelism: a part goes out while the next one is read from the client
        while len([t for t in self._parts if not t.done()]) >= self.settings.parallel_parts:
            await asyncio.wait(self._parts, return_when=asyncio.FIRST_COMPLETED)
        for t in self._parts:
            if t.done() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        body, self._buffer = self._buffer, Body()
        number = len(self._parts) + 1
        self._parts.append(
            asyncio.create_task(
                self.backend.upload_part(r.backend_key, self._upload_id, number, body)
            )
        )

    async def _record_upload_id(self) -> None:
        r = self.reservation
        assert r is not None
        async with self.sessions() as s, s.begin():
            await s.execute(
                text("UPDATE reservations SET upload_id = :up WHERE id = :id"),
                {"up": self._upload_id, "id": r.id},
            )

    async def _beat(self) -> None:
        """Keep the reservation alive while the body flows (the sweeper frees stale ones)."""
        r = self.reservation
        assert r is not None
        while True:
            with contextlib.suppress(Exception):
                await quota.touch(self.sessions, self.settings, r)
            await asyncio.sleep(self.settings.reservation_ttl_seconds / 3)

    async def finish(self, key: str, content_type: str) -> Stored:
        r = self.reservation
        assert r is not None
        if self.received > r.allowance:
            await quota.grow(self.sessions, self.settings, r, self.received)
        if self._upload_id is None:
            etag = await self.backend.put(r.backend_key, self._buffer)
        else:
            if self._buffer.size:
                await self._send_part()
            etags = list(await asyncio.gather(*self._parts))
            etag = await self.backend.complete_multipart(r.backend_key, self._upload_id, etags)
        self._buffer = Body()
        return await self._commit(key, etag, content_type)

    async def abort(self) -> None:
        """Give the quota back; the store object or multipart upload becomes a deletion intent."""
        self._stop_beat()
        for t in self._parts:
            t.cancel()
        await asyncio.gather(*self._parts, return_exceptions=True)
        self._buffer = Body()
        r = self.reservation
        if r is None:
            return
        self.reservation = None
        try:
            await asyncio.shield(quota.release(self.sessions, r, self._upload_id))
        except Exception:  # the sweeper frees the reservation when it expires
            log.warning("reservation not released; it will expire", reservation=str(r.id))

    async def _commit(self, key: str, etag: str, content_type: str) -> Stored:
        r = self.reservation
        assert r is not None
        self._stop_beat()
        params = (
            r.id,
            r.user_id,
            key,
            r.backend_key,
            self.received,
            etag,
            content_type,
            self.settings.delete_grace_seconds,
        )
        try:
            async with self.pool.connection(timeout=5) as conn:
                cur = await conn.execute(_COMMIT, params)
                outcome, at = await cur.fetchone() or ("gone", None)
        except psycopg.errors.CheckViolation as exc:  # within_quota: a replaced object shrank
            raise QuotaExceeded("the object does not fit in the quota") from exc
        if outcome == "gone":
            self.reservation = None  # its store object is already a deletion intent
            raise Unavailable("the upload took too long or the account is gone; nothing stored")
        self.reservation = None
        return Stored(key, self.received, etag, content_type, at, created=outcome == "created")


_COMMIT = "SELECT * FROM storage_commit_upload(%s, %s, %s, %s, %s, %s, %s, %s)"


async def put_whole(
    sessions: async_sessionmaker[AsyncSession],
    pool: AsyncConnectionPool[AsyncConnection],
    backend: Backend,
    settings: StorageSettings,
    user_id: uuid.UUID,
    key: str,
    length: int,
    chunks: AsyncIterator[bytes],
    content_type: str,
) -> Stored:
    """A small body with a Content-Length: read whole (it is at most
    `whole_body_max_bytes`), stored, then quota, usage and index in one transaction
    (`storage_put_whole`). A refusal there leaves a deletion intent for the stored body; a
    crash before it leaves an object no row owns, which the orphan scan removes."""
    body = Body()
    async for chunk in chunks:
        body.add(chunk)
        if body.size > length:
            raise QuotaExceeded("the body is longer than its Content-Length")
    size = body.size
    backend_key = f"{user_id}/{uuid.uuid4()}"
    try:
        etag = await backend.put(backend_key, body)
    except BaseException:
        with contextlib.suppress(Exception):  # else the orphan scan finds it
            await asyncio.shield(_forget(pool, backend_key))
        raise
    params = (user_id, key, backend_key, size, etag, content_type, settings.delete_grace_seconds)
    for _ in range(2):
        async with pool.connection(timeout=5) as conn:
            cur = await conn.execute(_PUT_WHOLE, params)
            outcome, at = await cur.fetchone() or ("absent", None)
        if outcome != "absent":
            break
        async with sessions() as s, s.begin():  # the first request of this user
            await spaces.ensure(s, settings, user_id)
    if outcome in ("created", "replaced"):
        return Stored(key, size, etag, content_type, at, created=outcome == "created")
    if outcome == "suspended":
        raise AccountSuspended(
            "the account is suspended for an unpaid invoice: storage is read-only"
        )
    if outcome == "quota":
        raise QuotaExceeded(f"{size} bytes do not fit in the free space of the quota")
    raise Unauthenticated("the account was deleted")


async def _forget(pool: AsyncConnectionPool[AsyncConnection], backend_key: str) -> None:
    async with pool.connection(timeout=5) as conn:
        await conn.execute("INSERT INTO deletions (backend_key) VALUES (%s)", (backend_key,))


_PUT_WHOLE = "SELECT * FROM storage_put_whole(%s, %s, %s, %s, %s, %s, %s)"
