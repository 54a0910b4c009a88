from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_billing.config import BillingSettings
from shardz_billing.db.tables import inbox, invoice_due_events, job_runs, outbox
from shardz_billing.events.handlers import consumers
from shardz_billing.services import payments, reconcile, runs
from shardz_billing.services.paystack import PaystackClient
from shardz_common.worker import Periodic, WorkerSpec


def scheduled_as_of(now: datetime, run_at_utc: str) -> datetime:
    """The day the scheduler bills at `now`: the day before, once `run_at_utc` has passed."""
    hours, minutes = (int(x) for x in run_at_utc.split(":"))
    return now.astimezone(UTC) - timedelta(hours=hours, minutes=minutes) - timedelta(days=1)


def spec(settings: BillingSettings | None = None) -> WorkerSpec:
    settings = settings or BillingSettings()
    http = httpx.AsyncClient()
    paystack = PaystackClient(settings.paystack_base_url, settings.paystack_secret_key, http)

    # Every job but the settlement runs once per interval across the worker's replicas (the
    # shared `job_runs` claim). The daily run also keeps its own lock and "already done"
    # check: an administrator's run, or a run longer than the poll interval, may overlap.
    async def schedule(sessions: async_sessionmaker[AsyncSession]) -> None:
        as_of = scheduled_as_of(datetime.now(UTC), settings.run_at_utc).date()
        async with sessions() as s, s.begin():
            await runs.daily_run(s, settings, as_of, trigger="schedule", skip_if_done=True)

    async def reconciliation(sessions: async_sessionmaker[AsyncSession]) -> None:
        await reconcile.reconcile_databases(sessions, http, settings)

    async def overdue(sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions() as s, s.begin():
            await runs.sweep_overdue(s, settings, datetime.now(UTC))

    async def finish(sessions: async_sessionmaker[AsyncSession]) -> None:
        while True:
            async with sessions() as s, s.begin():
                if await runs.mark_finished(s) == 0:
                    return

    async def settle(sessions: async_sessionmaker[AsyncSession]) -> None:
        if paystack.enabled:
            await payments.settle_pending(sessions, paystack)
            await payments.refund_pending(sessions, paystack)

    return WorkerSpec(
        settings=settings,
        outbox=outbox,
        inbox=inbox,
        consumers=consumers(),
        on_shutdown=http.aclose,
        job_runs=job_runs,
        extra_outboxes=[invoice_due_events],
        jobs=[
            Periodic("daily-run", settings.scheduler_poll_seconds, schedule, singleton=True),
            Periodic(
                "reconcile-databases",
                settings.reconcile_interval_seconds,
                reconciliation,
                singleton=True,
            ),
            Periodic("overdue-sweep", settings.overdue_interval_seconds, overdue, singleton=True),
            Periodic("mark-finished-subscriptions", 3600, finish, singleton=True),
            # each stored webhook event (and each charge to refund) is claimed with SKIP
            # LOCKED: replicas share the work
            Periodic("settle-payments", settings.settle_interval_seconds, settle),
        ],
    )
