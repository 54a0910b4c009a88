"""The daily billing run over 100,000 subscriptions vs its floor.

Ours: `shardz_billing.services.runs.daily_run` (lines, one invoice per user, each invoice
its own `invoice.due` record for the relay (ADR 0012), the overdue sweep) in one transaction,
committed.
Floor: one hand-written `INSERT … SELECT` that writes the same invoice lines (same periods,
same pro rata amounts, a unique key) into a bare table, on the same database in the same
run. The bench checks that both produce the same lines.

Data: 50,000 users with two paid database subscriptions each, every one with one period
due at the cutoff; one in ten cancelled mid-period (pro rata)."""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import date
from pathlib import Path

import psycopg
from common import Row, print_table

from shardz_billing.config import BillingSettings
from shardz_billing.domain.periods import run_cutoff
from shardz_billing.services.runs import daily_run
from shardz_common.db import make_engine, make_sessionmaker
from shardz_common.migrate import upgrade
from shardz_devstack.config import repo_root, state_root
from shardz_devstack.control import credentials_file, ensure_role
from shardz_devstack.postgres import ensure_databases

DATABASE = "shardz_bench_billing"
USERS = 50_000
PER_USER = 2
REPEATS = 3
AS_OF = date(2026, 6, 30)

SEED = f"""
INSERT INTO accounts (user_id, email)
SELECT gen_random_uuid(), 'u' || g || '@example.com' FROM generate_series(1, {USERS}) g;
INSERT INTO subscriptions (id, user_id, resource_type, resource_id, plan, price_minor, currency,
                           status, started_at, cancelled_at)
SELECT gen_random_uuid(), a.user_id, 'database', gen_random_uuid()::text,
       p.plan, p.price, 'NGN', 'active',
       %(cutoff)s::timestamptz - interval '40 days' - (random() * interval '5 days'),
       NULL
FROM accounts a
CROSS JOIN (VALUES ('db-starter', 500000), ('db-pro', 1500000)) AS p(plan, price);
UPDATE subscriptions SET status = 'cancelled',
       cancelled_at = started_at + (random() * interval '25 days')
WHERE random() < 0.1;
"""

RESET = """
TRUNCATE payments, invoice_lines, invoices, billing_runs, outbox, bench_floor_lines;
UPDATE subscriptions SET billing_done = false WHERE billing_done;
"""

FLOOR_TABLE = """
CREATE TABLE IF NOT EXISTS bench_floor_lines (
    subscription_id uuid NOT NULL, user_id uuid NOT NULL,
    period_start timestamptz NOT NULL, period_end timestamptz NOT NULL,
    description text NOT NULL, amount_minor bigint NOT NULL,
    UNIQUE (subscription_id, period_start))
"""

# Every subscription has exactly its first period due, so the floor needs no series.
FLOOR = """
INSERT INTO bench_floor_lines
SELECT s.id, s.user_id, s.started_at, e.period_end,
       s.plan || ' (database ' || s.resource_id || ')',
       CASE WHEN e.period_end >= e.full_end THEN s.price_minor
            ELSE (s.price_minor * 2 * floor(extract(epoch FROM e.period_end - s.started_at))::bigint
                  + floor(extract(epoch FROM e.full_end - s.started_at))::bigint)
                 / (2 * floor(extract(epoch FROM e.full_end - s.started_at))::bigint) END
FROM subscriptions s,
     LATERAL (SELECT s.started_at + interval '1 month' AS full_end,
                     least(s.started_at + interval '1 month', s.cancelled_at) AS period_end) e
WHERE s.price_minor > 0 AND e.period_end <= %(cutoff)s
"""

SAME = """
SELECT (SELECT count(*) FROM invoice_lines), (SELECT count(*) FROM bench_floor_lines),
       (SELECT count(*) FROM (
           SELECT subscription_id, period_start, period_end, amount_minor FROM invoice_lines
           EXCEPT
           SELECT subscription_id, period_start, period_end, amount_minor
           FROM bench_floor_lines) d),
       (SELECT count(*) FROM invoices)
"""


def _prepare() -> str:
    dsn = ensure_role(credentials_file(state_root()))
    ensure_databases(dsn, [DATABASE], fresh=True)
    url = dsn.rsplit("/", 1)[0] + "/" + DATABASE
    upgrade(
        Path(repo_root()) / "services" / "billing",
        url.replace("postgresql://", "postgresql+psycopg://", 1),
    )
    with psycopg.connect(url, autocommit=True) as conn:
        # the run computes in UTC whatever the session says; make the floor's interval
        # arithmetic agree with it
        conn.execute("ALTER DATABASE " + DATABASE + " SET timezone = 'UTC'")
    with psycopg.connect(url) as conn:
        conn.execute(FLOOR_TABLE)
        for statement in SEED.split(";")[:-1]:
            conn.execute(statement, {"cutoff": run_cutoff(AS_OF)} if "%(" in statement else None)
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return url


def _reset(url: str) -> None:
    with psycopg.connect(url) as conn:
        for statement in RESET.split(";")[:-1]:
            conn.execute(statement)
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE subscriptions")


def _floor(url: str) -> tuple[float, int]:
    with psycopg.connect(url) as conn:
        t0 = time.perf_counter()
        rows = conn.execute(FLOOR, {"cutoff": run_cutoff(AS_OF)}).rowcount
        conn.commit()
        return time.perf_counter() - t0, rows


async def _ours(url: str) -> tuple[float, int]:
    sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = make_engine(sa_url, pool_size=1)
    sessions = make_sessionmaker(engine)
    settings = BillingSettings(database_url=sa_url)
    async with engine.connect() as warm:  # connect outside the timed part, as the floor does
        await warm.close()
    try:
        t0 = time.perf_counter()
        async with sessions() as s, s.begin():
            outcome = await daily_run(s, settings, AS_OF)
        return time.perf_counter() - t0, outcome.invoices_created
    finally:
        await engine.dispose()


def run() -> list[Row]:
    url = _prepare()
    floors, ours = [], []
    for i in range(REPEATS):
        _reset(url)
        if i % 2 == 0:  # alternate which goes first: neither inherits the other's dirt
            floor_s, lines = _floor(url)
            ours_s, created = asyncio.run(_ours(url))
        else:
            ours_s, created = asyncio.run(_ours(url))
            floor_s, lines = _floor(url)
        with psycopg.connect(url) as conn:
            ours_lines, floor_lines, differ, invoices = conn.execute(SAME).fetchone()  # type: ignore[misc]
        assert ours_lines == floor_lines == lines and differ == 0, (ours_lines, floor_lines, differ)
        assert invoices == created == USERS, (invoices, created)
        floors.append(floor_s)
        ours.append(ours_s)
        print(
            f"  run {i + 1}: ours {ours_s * 1000:,.0f} ms, floor {floor_s * 1000:,.0f} ms"
            f" ({ours_s / floor_s:.2f}x),"
            f" {lines:,} lines, {created:,} invoices",
            flush=True,
        )
    o, f = statistics.median(ours), statistics.median(floors)
    print_table(
        f"daily run over {USERS * PER_USER:,} subscriptions (median of {REPEATS})",
        ["", "ms", "ours/floor"],
        [
            [
                "ours: daily_run (lines, invoices, invoice.due events, overdue sweep)",
                f"{o * 1000:,.0f}",
                f"{o / f:.2f}x",
            ],
            ["floor: one INSERT ... SELECT of the same lines", f"{f * 1000:,.0f}", "1.00x"],
        ],
    )
    return [
        Row(
            f"daily billing run over {USERS * PER_USER:,} subscriptions ({USERS:,} invoices)"
            " vs one INSERT … SELECT of the same lines",
            o * 1000,
            f * 1000,
            "ms",
            "ours ≤ 3x the floor",
            higher_is_better=False,
        )
    ]
