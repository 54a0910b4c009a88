"""Quota reservations: bytes are held in the space's row before they flow, so concurrent
uploads (in any number of API processes) can never together pass the quota."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.errors import QuotaExceeded
from shardz_storage.config import StorageSettings
from shardz_storage.services import spaces

# One statement: hold `n` bytes (less what the object being replaced already uses) if they
# fit, and record the reservation with the store key it will write.
_RESERVE = """
    WITH old AS (
      SELECT coalesce(
        (SELECT size FROM objects WHERE user_id = %(u)s AND key = %(key)s), 0) AS size
    ), held AS (
      UPDATE spaces SET reserved_bytes = reserved_bytes + greatest(0, %(n)s - old.size)
      FROM old
      WHERE user_id = %(u)s AND status = 'active'
        AND used_bytes + reserved_bytes + greatest(0, %(n)s - old.size) <= quota_bytes
      RETURNING greatest(0, %(n)s - old.size) AS bytes, old.size AS credit
    )
    INSERT INTO reservations (id, user_id, backend_key, bytes, expires_at)
    SELECT %(id)s, %(u)s, %(bk)s, held.bytes, now() + make_interval(secs => %(ttl)s) FROM held
    RETURNING bytes, (SELECT credit FROM held)
"""

# Growing a reservation: the space's row is locked by a plain SELECT ... FOR UPDATE first
# (a locking read inside a CTE shares the statement's snapshot for the UPDATE beside it).
_ROOM = text(
    "SELECT quota_bytes - used_bytes - reserved_bytes FROM spaces"
    " WHERE user_id = :u AND status <> 'deleted' FOR UPDATE"
)
_HOLD = text("UPDATE spaces SET reserved_bytes = reserved_bytes + :n WHERE user_id = :u")
_HOLD_FOR = text(
    "UPDATE reservations SET bytes = bytes + :n,"
    " expires_at = now() + make_interval(secs => :ttl) WHERE id = :id RETURNING id"
)

_TOUCH = text(
    "UPDATE reservations SET expires_at = now() + make_interval(secs => :ttl) WHERE id = :id"
)


@dataclass
class Reservation:
    id: uuid.UUID
    user_id: uuid.UUID
    backend_key: str
    held: int  # bytes held in the space's reserved_bytes
    credit: int  # size of the object this upload replaces, when it was reserved

    @property
    def allowance(self) -> int:
        return self.held + self.credit


async def reserve(
    sessions: async_sessionmaker[AsyncSession],
    pool: AsyncConnectionPool[AsyncConnection],
    settings: StorageSettings,
    user_id: uuid.UUID,
    key: str | None,
    n: int,
) -> Reservation:
    rid = uuid.uuid4()
    backend_key = f"{user_id}/{rid}"
    params = {
        "u": user_id,
        "key": key or "",
        "n": n,
        "id": rid,
        "bk": backend_key,
        "ttl": settings.reservation_ttl_seconds,
    }
    for attempt in range(2):
        # one statement in autocommit: one round trip on the hot path of every upload
        async with pool.connection(timeout=5) as conn:
            row = await (await conn.execute(_RESERVE, params)).fetchone()
        if row is not None:
            return Reservation(rid, user_id, backend_key, int(row[0]), int(row[1]))
        # Why not: no space yet (spaces.get creates it; then retry), read-only, or no room.
        async with sessions() as s, s.begin():
            space = await spaces.get(s, settings, user_id)
            spaces.require_writable(space)
            if attempt == 1:
                raise QuotaExceeded(
                    f"{n} bytes do not fit: {_room(space)} of {space['quota_bytes']} bytes are free"
                )
    raise AssertionError("unreachable")


def _room(space: dict[str, int]) -> int:
    return space["quota_bytes"] - space["used_bytes"] - space["reserved_bytes"]


async def grow(
    sessions: async_sessionmaker[AsyncSession],
    settings: StorageSettings,
    r: Reservation,
    received: int,
) -> None:
    """Hold enough for `received` bytes (and a step more when it fits), else QuotaExceeded."""
    need = received - r.allowance
    if need <= 0:
        return
    async with sessions() as s, s.begin():
        room = (await s.execute(_ROOM, {"u": r.user_id})).scalar_one_or_none()
        if room is None or room < need:
            raise QuotaExceeded("the upload passed the free space of the quota and was cut off")
        n = min(room, max(need, settings.reservation_step_bytes))
        await s.execute(_HOLD, {"u": r.user_id, "n": n})
        mine = await s.execute(
            _HOLD_FOR, {"id": r.id, "n": n, "ttl": settings.reservation_ttl_seconds}
        )
        if mine.first() is None:  # the sweeper took it: this upload is over
            raise QuotaExceeded("the upload's reservation expired")
    r.held += n


async def touch(
    sessions: async_sessionmaker[AsyncSession], settings: StorageSettings, r: Reservation
) -> None:
    async with sessions() as s, s.begin():
        await s.execute(_TOUCH, {"id": r.id, "ttl": settings.reservation_ttl_seconds})


async def release(
    sessions: async_sessionmaker[AsyncSession], r: Reservation, upload_id: str | None
) -> None:
    """Give the bytes back and record that the store object must go (whatever was written)."""
    async with sessions() as s, s.begin():
        await release_in(s, r.id, r.backend_key, upload_id)


async def release_in(
    s: AsyncSession, rid: uuid.UUID, backend_key: str, upload_id: str | None
) -> None:
    await s.execute(
        text(
            """
            WITH gone AS (DELETE FROM reservations WHERE id = :id RETURNING user_id, bytes)
            UPDATE spaces SET reserved_bytes = spaces.reserved_bytes - gone.bytes
            FROM gone WHERE spaces.user_id = gone.user_id
            """
        ),
        {"id": rid},
    )
    await s.execute(
        text("INSERT INTO deletions (backend_key, upload_id) VALUES (:bk, :up)"),
        {"bk": backend_key, "up": upload_id},
    )
