"""The steps of one move (ADR 0008). The record is the truth: until the switch it points at
the source and only the source takes logins; the switch (one transaction with `db.moved`)
points it at the target, whose role took logins just before. So a crash at any step leaves
one copy that logs in, and the reconciler either rolls a dead move back (`rollback`) or, once
switched, drops the source after the grace period (`drop_source`).

1. the role on the target, with the stored SCRAM verifier, limits and defaults (NOLOGIN);
2. the data: `pg_dump | pg_restore` under a freeze, or where both clusters run with
   `wal_level = logical`, the schema by pg_restore and the rows by logical replication,
   with the freeze only while the last changes arrive;
3. logins: on at the target, off at the source; 4. the switch."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import structlog
from psycopg.conninfo import make_conninfo
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.events import DatabaseMoved
from shardz_provisioner import faults
from shardz_provisioner.config import ProvisionerSettings
from shardz_provisioner.db.tables import Account, Database, Move
from shardz_provisioner.domain import names
from shardz_provisioner.services import ddl, move_ddl, pgtools
from shardz_provisioner.services.clusters import ClusterRegistry, ClusterUnavailable
from shardz_provisioner.services.events import emit
from shardz_provisioner.services.lifecycle import _mark_deleting
from shardz_provisioner.services.pgtools import Endpoint

log = structlog.get_logger(__name__)
CATCH_UP_SECONDS = 30.0
WORKER_START_SECONDS = 30.0  # it retries every 5 s (wal_retrieve_retry_interval)


class MoveRefused(Exception):
    """The clusters cannot take this move (e.g. the target runs an older major version)."""


@dataclass(frozen=True)
class Snap:
    move_id: uuid.UUID
    database_id: uuid.UUID
    user_id: uuid.UUID
    db: str
    role: str
    terminal: str
    src: str
    dst: str
    prior_status: str
    state: str

    @property
    def name(self) -> str:
        return names.move_name(self.move_id)


def reason(exc: BaseException) -> str:
    """What the admin view says of a failure: never SQL, a DSN or a tool's output."""
    if isinstance(exc, (MoveRefused, pgtools.ToolFailed)):
        return str(exc)
    if isinstance(exc, ClusterUnavailable):
        return "a database server did not answer"
    if isinstance(exc, TimeoutError):
        return "logical replication did not catch up in time"
    if isinstance(exc, psycopg.Error):
        return f"database error ({type(exc).__name__})"
    return "internal error"


@dataclass
class Mover:
    sessions: async_sessionmaker[AsyncSession]
    registry: ClusterRegistry
    settings: ProvisionerSettings

    async def run(self, move_id: uuid.UUID) -> None:
        snap = await self._load(move_id)
        if snap.state != "running":
            return
        try:
            await self._copy(snap)
            faults.hit("move_after_copy")
            await self._cut_over(snap)
        except Exception as exc:
            log.exception("move failed; rolling back", move_id=str(move_id))
            await self.rollback(move_id, reason(exc))
            return
        if not await self._switch(snap):
            await self.rollback(move_id, "rolled back while it ran")
            return
        faults.hit("move_after_switch")

    async def _load(self, move_id: uuid.UUID) -> Snap:
        async with self.sessions() as s:
            move = await s.get(Move, move_id)
            assert move is not None
            db = await s.get(Database, move.database_id)
            assert db is not None
        return Snap(
            move.id, db.id, db.user_id, db.db_name, db.role_name,
            names.terminal_role_name(db.id), move.from_cluster, move.to_cluster,
            move.prior_status, move.state,
        )  # fmt: skip

    async def note(self, move_id: uuid.UUID, **fields: Any) -> None:
        """Progress for the admin view; also the mover's pulse (`heartbeat_at`)."""
        async with self.sessions() as s, s.begin():
            move = await s.get(Move, move_id)
            if move is not None:
                now = datetime.now(UTC)
                for key, value in fields.items():
                    setattr(move, key, value)
                move.heartbeat_at = move.updated_at = now

    async def _copy(self, snap: Snap) -> None:
        async with self.registry.admin(snap.src) as conn:
            src_major, src_wal = await move_ddl.server_facts(conn)
            role = await move_ddl.read_role(conn, snap.role)
        async with self.registry.admin(snap.dst) as conn:
            dst_major, dst_wal = await move_ddl.server_facts(conn)
        if dst_major < src_major:
            raise MoveRefused("the target cluster runs an older PostgreSQL major version")
        tools = pgtools.bindir(self.settings.pg_bin_root, dst_major)
        source = Endpoint.from_dsn(await self.registry.dsn(snap.src), snap.db)
        target = Endpoint.from_dsn(await self.registry.dsn(snap.dst), snap.db)
        why_not: str | None = "wal_level is not logical on both clusters"
        if src_wal == dst_wal == "logical":
            async with self.registry.admin_in(snap.src, snap.db) as conn:
                why_not = await move_ddl.replicable(conn)
        mode = "dump" if why_not else "logical"
        log.info("moving", move_id=str(snap.move_id), mode=mode, why_not=why_not)
        await self.note(snap.move_id, mode=mode, step="preparing the target")
        async with self.registry.admin(snap.dst) as conn:
            # whatever an earlier, failed attempt left there
            await ddl.drop(conn, snap.db, snap.role, snap.terminal)
            await move_ddl.write_role(conn, snap.role, role)
            await ddl.create_database(conn, snap.db, snap.role)
        if mode == "dump":
            await self._freeze(snap, "copying (writes frozen)")
            await pgtools.copy(tools, source, target, snap.role)
        else:
            await self._replicate(snap, tools, source, target)

    async def _freeze(self, snap: Snap, step: str) -> None:
        async with self.registry.admin(snap.src) as conn:
            await move_ddl.freeze(conn, snap.db, snap.role, snap.terminal)
        await self.note(snap.move_id, step=step, freeze_started_at=datetime.now(UTC))

    async def _replicate(self, snap: Snap, tools: Any, source: Endpoint, target: Endpoint) -> None:
        async with self.registry.admin_in(snap.src, snap.db) as conn:
            await move_ddl.create_publication(conn, snap.name)
        schema = await pgtools.schema_fingerprint(tools, source)
        await pgtools.copy(tools, source, target, snap.role, schema_only=True)
        conninfo = make_conninfo(await self.registry.dsn(snap.src), dbname=snap.db)
        async with self.registry.admin_in(snap.dst, snap.db) as conn:
            await move_ddl.create_subscription(conn, snap.name, conninfo, snap.role)
        await self.note(snap.move_id, step="copying rows (logical replication)")
        deadline = time.monotonic() + self.settings.move_sync_timeout_seconds
        last_seen = time.monotonic()
        async with self.registry.admin_in(snap.dst, snap.db) as conn:
            while True:
                pending, errors, running = await move_ddl.sync_state(conn, snap.name)
                if errors:
                    raise pgtools.ToolFailed("logical replication reported errors")
                if not pending and running:
                    break
                now = time.monotonic()
                last_seen = now if running else last_seen
                if now - last_seen > WORKER_START_SECONDS:
                    raise pgtools.ToolFailed("the logical replication worker does not start")
                if now > deadline:
                    raise TimeoutError
                await asyncio.sleep(0.2)
        await self._freeze(snap, "catching up (writes frozen)")
        if await pgtools.schema_fingerprint(tools, source) != schema:
            # the tenant changed its schema meanwhile, which replication does not carry:
            # copy it whole, under the freeze
            await self.note(snap.move_id, mode="dump", step="copying (schema changed; frozen)")
            await self._end_replication(snap)
            async with self.registry.admin(snap.dst) as conn:
                await ddl.drop(conn, snap.db, snap.role)
            async with self.registry.admin(snap.src) as conn:
                role = await move_ddl.read_role(conn, snap.role)
            async with self.registry.admin(snap.dst) as conn:
                await move_ddl.write_role(conn, snap.role, role)
                await ddl.create_database(conn, snap.db, snap.role)
            await pgtools.copy(tools, source, target, snap.role)
            return
        async with self.registry.admin(snap.src) as conn:
            lsn = await move_ddl.current_lsn(conn)
            deadline = time.monotonic() + CATCH_UP_SECONDS
            while not await move_ddl.slot_confirmed(conn, snap.name, lsn):
                if time.monotonic() > deadline:
                    raise TimeoutError
                await asyncio.sleep(0.02)
        async with self.registry.admin_in(snap.src, snap.db) as conn:
            sequences = await move_ddl.read_sequences(conn)
        async with self.registry.admin_in(snap.dst, snap.db) as conn:
            await move_ddl.write_sequences(conn, sequences)
        await self._end_replication(snap)

    async def _end_replication(self, snap: Snap) -> None:
        """Subscription, its role, the slot and the publication go (idempotent)."""
        if await self._exists(snap.dst, snap.db):
            async with self.registry.admin_in(snap.dst, snap.db) as conn:
                await move_ddl.drop_subscription(conn, snap.name)
        async with self.registry.admin(snap.dst) as conn:
            await move_ddl.drop_move_role(conn, snap.name)
        async with self.registry.admin(snap.src) as conn:
            await move_ddl.drop_slot(conn, snap.name)
        if await self._exists(snap.src, snap.db):
            async with self.registry.admin_in(snap.src, snap.db) as conn:
                await move_ddl.drop_publication(conn, snap.name)

    async def _exists(self, cluster: str, db: str) -> bool:
        async with self.registry.admin(cluster) as conn:
            cur = await conn.execute(
                "SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", (db,)
            )
            return await cur.fetchone() is not None

    async def _state(self, snap: Snap) -> tuple[str | None, bool]:
        """(size state, whether the role may log in) as the record says now."""
        async with self.sessions() as s:
            db = await s.get(Database, snap.database_id)
            account = await s.get(Account, snap.user_id)
        assert db is not None
        suspended = account is not None and account.status != "active"
        login = not suspended and snap.prior_status == "ready" and db.size_state != "over_grown"
        return db.size_state, login

    async def _cut_over(self, snap: Snap) -> None:
        size_state, login = await self._state(snap)
        # again, under the freeze (no ALTER ROLE gets through it): the tenant may have set
        # another password of its own since the copy started
        async with self.registry.admin(snap.src) as conn:
            role = await move_ddl.read_role(conn, snap.role)
        async with self.registry.admin(snap.dst) as conn:
            await move_ddl.write_role(conn, snap.role, role)
            if size_state is not None:
                await ddl.set_read_only(conn, snap.db, snap.role, True)
            await ddl.set_login(conn, snap.role, login)
        async with self.registry.admin(snap.src) as conn:
            await ddl.set_login(conn, snap.role, False)
            await ddl.disable_terminal_login(conn, snap.terminal)
            await ddl.terminate_sessions(conn, snap.role)

    async def _switch(self, snap: Snap) -> bool:
        async with self.sessions() as s, s.begin():
            move = await s.get(Move, snap.move_id, with_for_update=True)
            db = await s.get(Database, snap.database_id, with_for_update=True)
            assert move is not None and db is not None
            if move.state != "running":
                return False
            now = datetime.now(UTC)
            db.cluster, db.status, db.updated_at = snap.dst, snap.prior_status, now
            db.access_pending = True  # logins follow the account as it is now, on the target
            move.state, move.step = "switched", None
            move.freeze_ended_at = move.updated_at = now
            move.drop_after = now + timedelta(seconds=self.settings.move_grace_seconds)
            emit(
                s,
                DatabaseMoved(
                    database_id=db.id, user_id=db.user_id,
                    from_cluster=snap.src, to_cluster=snap.dst,
                ),
                db.id,
            )  # fmt: skip
            account = await s.get(Account, db.user_id)
            if account is not None and account.status == "deleted":
                _mark_deleting(s, db)
        log.info("moved", move_id=str(snap.move_id), to=snap.dst)
        return True

    async def rollback(self, move_id: uuid.UUID, why: str) -> None:
        """Back to the source as it was: the target copy, role and replication go, the source
        thaws and takes logins again. Raises ClusterUnavailable (the reconciler retries)."""
        snap = await self._load(move_id)
        if snap.state not in ("running", "rolled_back"):
            return
        await self._end_replication(snap)
        async with self.registry.admin(snap.dst) as conn:
            await ddl.drop(conn, snap.db, snap.role, snap.terminal)
        size_state, login = await self._state(snap)
        async with self.registry.admin(snap.src) as conn:
            if size_state is None:
                await move_ddl.unfreeze(conn, snap.db)
            await ddl.set_login(conn, snap.role, login)
        async with self.sessions() as s, s.begin():
            move = await s.get(Move, move_id, with_for_update=True)
            db = await s.get(Database, snap.database_id, with_for_update=True)
            assert move is not None and db is not None
            move.state, move.step, move.error = "failed", None, why[:500]
            move.updated_at = datetime.now(UTC)
            if db.status == "moving" and db.cluster == snap.src:
                db.status, db.updated_at = snap.prior_status, datetime.now(UTC)
                db.access_pending = True
                account = await s.get(Account, db.user_id)
                if account is not None and account.status == "deleted":
                    _mark_deleting(s, db)
        log.warning("move rolled back", move_id=str(move_id), why=why)

    async def drop_source(self, move: Move, db: Database) -> None:
        """After the grace period: the source copy (frozen, no logins) goes."""
        terminal = names.terminal_role_name(db.id)
        async with self.registry.admin(move.from_cluster) as conn:
            await move_ddl.drop_slot(conn, names.move_name(move.id))
            await ddl.drop(conn, db.db_name, db.role_name, terminal)
