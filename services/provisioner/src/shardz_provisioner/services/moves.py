"""Moving databases between clusters (administrators): the intent is recorded and answered
202; a runner in the API or the worker claims it and runs services/mover.py, at most
`moves_per_cluster` at a time on any cluster; the worker rolls back moves whose runner died
and drops source copies once their grace period is over."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.errors import Conflict, NotFound, ValidationFailed
from shardz_provisioner.config import ProvisionerSettings
from shardz_provisioner.db.tables import Cluster, Database, Move
from shardz_provisioner.domain.models import MoveOut
from shardz_provisioner.services.clusters import ClusterRegistry, ClusterUnavailable, cluster_loads
from shardz_provisioner.services.mover import Mover

log = structlog.get_logger(__name__)
MOVABLE = ("ready", "suspended")


def to_out(move: Move) -> MoveOut:
    freeze = None
    if move.freeze_started_at is not None and move.freeze_ended_at is not None:
        freeze = (move.freeze_ended_at - move.freeze_started_at).total_seconds()
    return MoveOut(
        id=move.id,
        database_id=move.database_id,
        from_cluster=move.from_cluster,
        to_cluster=move.to_cluster,
        state=move.state,
        mode=move.mode,
        step=move.step,
        error=move.error,
        writes_frozen=move.freeze_started_at is not None and move.freeze_ended_at is None,
        freeze_seconds=freeze,
        created_at=move.created_at,
        drop_after=move.drop_after,
    )


async def _source_awaiting_drop(
    session: AsyncSession, database_id: uuid.UUID, cluster: str
) -> bool:
    row = await session.execute(
        select(Move.id).where(
            Move.database_id == database_id, Move.state == "switched", Move.from_cluster == cluster
        )
    )
    return row.first() is not None


def _queue(session: AsyncSession, db: Database, target: str) -> Move:
    assert db.cluster is not None
    now = datetime.now(UTC)
    move = Move(
        id=uuid.uuid4(),
        database_id=db.id,
        from_cluster=db.cluster,
        to_cluster=target,
        state="queued",
        prior_status=db.status,
        created_at=now,
        updated_at=now,
    )
    db.status, db.updated_at = "moving", now
    session.add(move)
    return move


async def request(session: AsyncSession, database_id: uuid.UUID, target: str) -> MoveOut:
    """POST /v1/databases/{id}/move. Refused (409) while the database is anything but ready
    or suspended (being created, deleted, moved, or its credential rotated)."""
    db = await session.get(Database, database_id, with_for_update=True)
    if db is None or db.status == "deleted":
        raise NotFound("no such database")
    cluster = await session.get(Cluster, target)
    if cluster is None:
        raise ValidationFailed(f"no cluster named {target!r}", field="cluster")
    if db.status not in MOVABLE:
        raise Conflict(f"the database is {db.status}")
    if db.pending_password is not None:
        raise Conflict("a credential rotation is in progress")
    if db.cluster == target:
        raise Conflict(f"the database is already on {target}")
    if cluster.status != "active":
        raise Conflict(f"cluster {target} is {cluster.status}: it takes no databases")
    if await _source_awaiting_drop(session, db.id, target):
        raise Conflict(f"the copy this database left on {target} is still in its grace period")
    move = _queue(session, db, target)
    await session.flush()
    return to_out(move)


async def drain(
    session: AsyncSession, registry: ClusterRegistry, settings: ProvisionerSettings, name: str
) -> int:
    """Queue a move off `name` for each of its databases, each to the least loaded active
    cluster counting the moves queued so far; the cluster is already `draining`."""
    candidates = set(await registry.placement(session, settings.connection_overcommit))
    candidates.discard(name)
    loads = {c.name: (used, c.capacity) for c, used in await cluster_loads(session)}
    rows = (
        await session.execute(
            select(Database)
            .where(Database.cluster == name, Database.status.in_(MOVABLE))
            .order_by(Database.created_at)
            .with_for_update(skip_locked=True)
        )
    ).scalars()
    queued = 0
    for db in rows:
        targets = [
            c for c in candidates
            if loads[c][0] < loads[c][1] and not await _source_awaiting_drop(session, db.id, c)
        ]  # fmt: skip
        # none (all full, or its old copy there still in its grace period): it stays, and
        # a later drain?move=true takes it
        if not targets or db.pending_password is not None:
            continue
        target = min(targets, key=lambda c: (loads[c][0] / loads[c][1], c))
        _queue(session, db, target)
        loads[target] = (loads[target][0] + 1, loads[target][1])
        queued += 1
    await session.flush()
    return queued


async def history(session: AsyncSession, database_id: uuid.UUID) -> list[MoveOut]:
    if await session.get(Database, database_id) is None:
        raise NotFound("no such database")
    rows = await session.execute(
        select(Move).where(Move.database_id == database_id).order_by(Move.created_at.desc())
    )
    return [to_out(m) for m in rows.scalars()]


async def claim(sessions: async_sessionmaker[AsyncSession], per_cluster: int) -> list[uuid.UUID]:
    """Queued moves that may start now: none of their clusters is in `per_cluster` running
    moves. One claimer at a time (an advisory lock), so two processes never exceed it."""
    async with sessions() as s, s.begin():
        await s.execute(text("SELECT pg_advisory_xact_lock(hashtext('provisioner.moves'))"))
        busy: dict[str, int] = {}
        running = await s.execute(
            select(Move.from_cluster, Move.to_cluster).where(Move.state == "running")
        )
        for src, dst in running.tuples():
            busy[src] = busy.get(src, 0) + 1
            busy[dst] = busy.get(dst, 0) + 1
        queued = await s.execute(
            select(Move).where(Move.state == "queued").order_by(Move.created_at).limit(100)
        )
        claimed = []
        now = datetime.now(UTC)
        for move in queued.scalars():
            if max(busy.get(move.from_cluster, 0), busy.get(move.to_cluster, 0)) >= per_cluster:
                continue
            move.state, move.heartbeat_at, move.updated_at = "running", now, now
            busy[move.from_cluster] = busy.get(move.from_cluster, 0) + 1
            busy[move.to_cluster] = busy.get(move.to_cluster, 0) + 1
            claimed.append(move.id)
    return claimed


class MoveRunner:
    """Runs claimed moves as tasks of this process, each with a pulse the reconciler reads."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: ClusterRegistry,
        settings: ProvisionerSettings,
    ) -> None:
        self.mover = Mover(sessions, registry, settings)
        self.sessions = sessions
        self.settings = settings
        self.tasks: set[asyncio.Task[None]] = set()

    async def kick(self) -> None:
        for move_id in await claim(self.sessions, self.settings.moves_per_cluster):
            task = asyncio.create_task(self._run(move_id))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _run(self, move_id: uuid.UUID) -> None:
        pulse = asyncio.create_task(self._pulse(move_id))
        try:
            await self.mover.run(move_id)
        except Exception:
            log.exception("move stopped; the reconciler takes it from here", move_id=str(move_id))
        finally:
            pulse.cancel()
        with contextlib.suppress(Exception):
            await self.kick()  # the next queued move may start now

    async def _pulse(self, move_id: uuid.UUID) -> None:
        every = max(0.2, self.settings.move_stale_seconds / 4)
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(Exception):
                async with self.sessions() as s, s.begin():
                    move = await s.get(Move, move_id)
                    if move is not None and move.state == "running":
                        move.heartbeat_at = datetime.now(UTC)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def reconcile(self) -> None:
        """Roll back moves whose runner stopped; drop sources past their grace period."""
        stale = datetime.now(UTC) - timedelta(seconds=self.settings.move_stale_seconds)
        async with self.sessions() as s, s.begin():
            dead = (
                await s.execute(
                    select(Move)
                    .where(Move.state == "running", Move.heartbeat_at < stale)
                    .limit(5)
                    .with_for_update(skip_locked=True)
                )
            ).scalars()
            ids = []
            for move in dead:  # taken over: another reconciler waits a whole period again
                move.heartbeat_at = datetime.now(UTC)
                ids.append(move.id)
        for move_id in ids:
            try:
                await self.mover.rollback(move_id, "the mover stopped; rolled back")
            except ClusterUnavailable:
                log.warning("move rollback deferred: a cluster is away", move_id=str(move_id))
        await self._drop_sources()
        await self.kick()

    async def _drop_sources(self) -> None:
        async with self.sessions() as s, s.begin():
            rows = (
                await s.execute(
                    select(Move, Database)
                    .join(Database, Database.id == Move.database_id)
                    .where(Move.state == "switched", Move.drop_after <= func.now())
                    .limit(5)
                    .with_for_update(of=Move, skip_locked=True)
                )
            ).tuples()
            for move, db in rows:
                try:
                    await self.mover.drop_source(move, db)
                except ClusterUnavailable:
                    continue
                move.state, move.updated_at = "done", datetime.now(UTC)
                log.info("dropped a moved database's source copy", move_id=str(move.id))
