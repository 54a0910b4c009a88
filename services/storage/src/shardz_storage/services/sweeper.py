"""Convergence with the object store, run by the worker. Each pass holds an advisory lock, so
with several worker replicas one sweeps at a time and none repeats another's S3 calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.events import StorageUsageReported
from shardz_storage.config import StorageSettings
from shardz_storage.services.backend import Backend, Listed
from shardz_storage.services.events import emit

log = structlog.get_logger(__name__)
SWEEP_LOCK = 7413001
ORPHAN_LOCK = 7413002
BATCH = 200


@asynccontextmanager
async def lease(sessions: async_sessionmaker[AsyncSession], key: int) -> AsyncIterator[bool]:
    """True while this process holds the lock `key` (released with the transaction, also
    when the process dies)."""
    async with sessions() as s, s.begin():
        held = (await s.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})).scalar()
        yield bool(held)


async def expire_reservations(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Uploads whose process died: give their bytes back, queue what they wrote."""
    async with sessions() as s, s.begin():
        rows = (
            await s.execute(
                text(
                    """
                    WITH gone AS (
                      DELETE FROM reservations WHERE id IN (
                        SELECT id FROM reservations WHERE expires_at < now()
                        ORDER BY expires_at LIMIT :n FOR UPDATE SKIP LOCKED)
                      RETURNING user_id, bytes, backend_key, upload_id
                    ), freed AS (
                      UPDATE spaces SET reserved_bytes = spaces.reserved_bytes - g.total
                      FROM (SELECT user_id, sum(bytes) AS total FROM gone GROUP BY user_id) g
                      WHERE spaces.user_id = g.user_id AND spaces.status <> 'deleted'
                    )
                    INSERT INTO deletions (backend_key, upload_id)
                    SELECT backend_key, upload_id FROM gone RETURNING id
                    """
                ),
                {"n": BATCH},
            )
        ).all()
    return len(rows)


async def apply_deletions(sessions: async_sessionmaker[AsyncSession], backend: Backend) -> int:
    """Remove the store objects of due deletion intents; a failure is retried later."""
    async with sessions() as s, s.begin():
        due = (
            await s.execute(
                text(
                    "SELECT id, backend_key, upload_id FROM deletions WHERE not_before <= now()"
                    " ORDER BY not_before LIMIT :n FOR UPDATE SKIP LOCKED"
                ),
                {"n": BATCH},
            )
        ).all()
        if not due:
            return 0
        done: list[int] = []
        failed: list[int] = []
        for row in due:
            if row.upload_id:
                try:
                    await backend.abort_multipart(row.backend_key, row.upload_id)
                except Exception as exc:
                    log.warning("abort failed; will retry", key=row.backend_key, error=repr(exc))
                    failed.append(row.id)
                    continue
            done.append(row.id)
        try:
            await backend.delete(sorted({r.backend_key for r in due if r.id in done}))
        except Exception as exc:
            log.warning("deletions failed; will retry", count=len(done), error=repr(exc))
            failed, done = failed + done, []
        await s.execute(text("DELETE FROM deletions WHERE id = ANY(:ids)"), {"ids": done})
        # back off: 2, 4, 8 ... seconds, at most five minutes
        await s.execute(
            text(
                "UPDATE deletions SET attempts = attempts + 1, not_before = now()"
                " + make_interval(secs => least(300, 2 ^ least(attempts + 1, 9)))"
                " WHERE id = ANY(:ids)"
            ),
            {"ids": failed},
        )
    return len(done)


async def report_usage(sessions: async_sessionmaker[AsyncSession]) -> int:
    """storage.usage.reported for every space whose usage changed since its last report."""
    async with sessions() as s, s.begin():
        rows = (
            await s.execute(
                text(
                    """
                    UPDATE spaces SET usage_changed_at = NULL WHERE user_id IN (
                      SELECT user_id FROM spaces WHERE usage_changed_at IS NOT NULL
                      ORDER BY usage_changed_at LIMIT :n FOR UPDATE SKIP LOCKED)
                    RETURNING user_id, used_bytes, object_count, plan, now() AS at
                    """
                ),
                {"n": 1000},
            )
        ).all()
        for r in rows:
            emit(
                s,
                StorageUsageReported(
                    user_id=r.user_id,
                    used_bytes=r.used_bytes,
                    object_count=r.object_count,
                    measured_at=r.at,
                    plan=r.plan,
                ),
                r.user_id,
            )
    return len(rows)


async def _owned(s: AsyncSession, keys: list[str]) -> set[str]:
    rows = await s.execute(
        text(
            "SELECT backend_key FROM objects WHERE backend_key = ANY(:k)"
            " UNION SELECT backend_key FROM reservations WHERE backend_key = ANY(:k)"
            " UNION SELECT backend_key FROM deletions WHERE backend_key = ANY(:k)"
        ),
        {"k": keys},
    )
    return set(rows.scalars().all())


async def remove_orphans(
    sessions: async_sessionmaker[AsyncSession], backend: Backend, grace_seconds: float
) -> int:
    """Store objects and multipart uploads that no row owns (e.g. written by a process that
    died between the store and the database) become deletion intents."""
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
    found = 0

    async def adopt(items: list[Listed]) -> None:
        nonlocal found
        old = [i for i in items if i.modified <= cutoff]
        if not old:
            return
        async with sessions() as s, s.begin():
            owned = await _owned(s, [i.key for i in old if i.upload_id is None])
            for i in old:
                if i.upload_id is None:
                    orphan = i.key not in owned
                else:
                    orphan = not await _upload_owned(s, i)
                if orphan:
                    await s.execute(
                        text("INSERT INTO deletions (backend_key, upload_id) VALUES (:bk, :up)"),
                        {"bk": i.key, "up": i.upload_id},
                    )
                    found += 1

    async for page in backend.list_objects():
        await adopt(page)
    async for page in backend.list_multipart_uploads():
        await adopt(page)
    return found


async def _upload_owned(s: AsyncSession, item: Listed) -> bool:
    row = await s.execute(
        text(
            "SELECT 1 FROM reservations WHERE backend_key = :bk AND"
            " (upload_id IS NULL OR upload_id = :up)"
            " UNION ALL SELECT 1 FROM deletions WHERE backend_key = :bk AND upload_id = :up"
        ),
        {"bk": item.key, "up": item.upload_id},
    )
    return row.first() is not None


async def sweep(
    sessions: async_sessionmaker[AsyncSession], backend: Backend, settings: StorageSettings
) -> None:
    async with lease(sessions, SWEEP_LOCK) as mine:
        if not mine:
            return
        await expire_reservations(sessions)
        while await apply_deletions(sessions, backend) == BATCH:
            pass


async def sweep_orphans(
    sessions: async_sessionmaker[AsyncSession], backend: Backend, settings: StorageSettings
) -> None:
    async with lease(sessions, ORPHAN_LOCK) as mine:
        if mine:
            found = await remove_orphans(sessions, backend, settings.orphan_grace_seconds)
            if found:
                log.info("orphans queued for deletion", count=found)
