"""Jobs that must run once per interval however many worker replicas there are (metering,
billing's daily run): each replica's scheduler ticks, and one conditional UPDATE decides which
tick runs. No lease to renew, no leader to lose: a replica that dies simply stops claiming."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, String, Table, func, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


def job_runs_table(metadata: MetaData) -> Table:
    return Table(
        "job_runs",
        metadata,
        Column("name", String(120), primary_key=True),
        Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


async def claim_run(
    sessions: async_sessionmaker[AsyncSession], job_runs: Table, name: str, every_seconds: float
) -> bool:
    """True for exactly one caller per `every_seconds` (a small slack absorbs clock jitter
    between two ticks of the same replica)."""
    slack = min(1.0, every_seconds * 0.1)
    async with sessions() as s, s.begin():
        await s.execute(
            insert(job_runs)
            .values(name=name, started_at=text("'-infinity'"))
            .on_conflict_do_nothing()
        )
        claimed = await s.execute(
            job_runs.update()
            .where(
                job_runs.c.name == name,
                job_runs.c.started_at
                <= func.now() - func.make_interval(0, 0, 0, 0, 0, 0, every_seconds - slack),
            )
            .values(started_at=func.now())
            .returning(job_runs.c.name)
        )
        return claimed.first() is not None
