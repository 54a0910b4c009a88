from __future__ import annotations

from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.worker import Periodic, WorkerSpec
from shardz_provisioner.config import ProvisionerSettings
from shardz_provisioner.db.tables import inbox, job_runs, outbox
from shardz_provisioner.events.handlers import consumers
from shardz_provisioner.services import dump_runner, dump_sweeper, lifecycle, reconciler, sizes
from shardz_provisioner.services.clusters import ClusterRegistry
from shardz_provisioner.services.dumpstore import DumpStore
from shardz_provisioner.services.moves import MoveRunner


def spec(settings: ProvisionerSettings | None = None) -> WorkerSpec:
    settings = settings or ProvisionerSettings()
    registry = ClusterRegistry(Fernet(settings.fernet_key()), settings.admin_pool_size)
    runners: list[MoveRunner] = []

    async def start(sessions: async_sessionmaker[AsyncSession]) -> None:
        """Clusters are known before the first event is handled."""
        registry.sessions = sessions
        async with sessions() as s, s.begin():
            await registry.register_from_settings(s, settings.tenant_clusters)
        await registry.refresh()
        runners.append(MoveRunner(sessions, registry, settings))

    # The registry learns of new or changed clusters by itself (on a miss or a failed
    # connection); find_orphans and meter reload them too.
    async def reconcile(sessions: async_sessionmaker[AsyncSession]) -> None:
        await reconciler.rollback_stale_intents(
            sessions, registry, settings.provisioning_timeout_seconds
        )
        await reconciler.settle_rotations(sessions, registry, settings.provisioning_timeout_seconds)
        await reconciler.find_orphans(sessions, registry)

    async def delete(sessions: async_sessionmaker[AsyncSession]) -> None:
        while await reconciler.finish_deletions(sessions, registry):
            pass

    async def apply_access(sessions: async_sessionmaker[AsyncSession]) -> None:
        while await lifecycle.apply_access(sessions, registry):
            pass

    async def enforce_sizes(sessions: async_sessionmaker[AsyncSession]) -> None:
        await sizes.enforce(
            sessions,
            registry,
            settings.platform.free_plan_database_size_bytes,
            settings.idle_transaction_ceiling_seconds,
            settings.statement_ceiling_seconds,
        )

    async def moves(sessions: async_sessionmaker[AsyncSession]) -> None:
        """Start queued moves (drains), roll back dead ones, drop sources past their grace."""
        await runners[0].reconcile()

    async def shutdown() -> None:
        for runner in runners:
            await runner.close()
        await registry.close()

    async def meter(sessions: async_sessionmaker[AsyncSession]) -> None:
        await reconciler.meter(sessions, registry)

    store = DumpStore(settings)

    # one job at a time per worker process; more workers run more jobs at once
    async def run_dumps(sessions: async_sessionmaker[AsyncSession]) -> None:
        while await dump_runner.run_next(sessions, registry, settings, store):
            pass

    async def sweep_dumps(sessions: async_sessionmaker[AsyncSession]) -> None:
        while await dump_sweeper.sweep(sessions, settings, store):
            pass

    return WorkerSpec(
        settings=settings,
        outbox=outbox,
        inbox=inbox,
        consumers=consumers(registry),
        on_start=start,
        on_shutdown=shutdown,
        jobs=[
            Periodic("reconcile", settings.reconcile_interval_seconds, reconcile),
            Periodic("finish-deletions", settings.deletion_poll_seconds, delete),
            Periodic("apply-access", settings.access_poll_seconds, apply_access),
            Periodic("moves", settings.move_poll_seconds, moves),
            Periodic(
                "enforce-sizes", settings.size_check_interval_seconds, enforce_sizes, singleton=True
            ),
            # one report per database and interval, however many workers run
            Periodic("meter-usage", settings.metering_interval_seconds, meter, singleton=True),
            Periodic("run-dumps", settings.dump_poll_seconds, run_dumps),
            Periodic(
                "sweep-dumps", settings.dump_sweep_interval_seconds, sweep_dumps, singleton=True
            ),
        ],
        job_runs=job_runs,
    )
