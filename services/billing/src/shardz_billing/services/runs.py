"""The daily run, set-based: one statement of data-modifying CTEs (plus the overdue sweep),
whatever the number of subscriptions.

1. every monthly period that ended by the run's cutoff and has no line yet becomes a line
   (pro rata, to the second, for a subscription cancelled mid-period);
2. one invoice per user with a positive total, its lines, `invoice.due` for each;
3. open invoices past `due_at` + grace turn `overdue` and their accounts are suspended.

Exactly once per (subscription, period): the primary key of invoice lines refuses a second
line, a transaction-scoped advisory lock makes concurrent runs wait for each other (or
answer 409 after a while), and a run that dies half-way commits nothing, so running again
produces what the interrupted run would have."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import CursorResult, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_billing.config import BillingSettings
from shardz_billing.domain.periods import run_cutoff
from shardz_common.errors import Conflict
from shardz_common.plans import Plan, all_plans

log = structlog.get_logger(__name__)

RUN_LOCK = 7_410_104  # advisory lock key of the daily run

# One statement: data-modifying CTEs share one snapshot and write each row once. The run's
# transaction is in UTC (`SET LOCAL timezone`), so `+ make_interval(months => n)` adds
# calendar months in UTC (Jan 31 + 1 month = Feb 28/29, + 2 months = Mar 31).
#
# `due`: every period that ended by :cutoff and has no line yet, with a positive amount. A
# subscription's next unbilled period follows its last line's `period_no` (a probe of the
# primary key); one whose first period ended after the cutoff of every earlier run cannot
# have a line yet, and starts at 0 without the probe. `n` runs from there up to a generous
# bound, and the WHERE clause is the exact test. Amounts are integer kobo, pro rata to the
# second, rounded half up.
#
# A line names its run, not its invoice: one invoice per user and run, so lines are
# written straight from `due` with no join back to the inserted invoices, and the invoices
# are one aggregate over the same rows. `invoice.due` is not an outbox row: each new
# invoice is its own event record (migration 0003).
_RUN = """
WITH due AS MATERIALIZED (
    SELECT s.id AS subscription_id, s.user_id, s.currency, g.n AS period_no,
           p.period_start, p.period_end, a.amount_minor,
           coalesce(plans.name, s.plan) || ' (' || s.resource_type || ' ' || s.resource_id
             || CASE WHEN p.period_end < p.full_end THEN '), pro rata' ELSE ')' END
             AS description
    FROM subscriptions s
    CROSS JOIN (
        SELECT coalesce((max(as_of) + 1)::timestamp AT TIME ZONE 'UTC', '-infinity')
               AS cutoff
        FROM billing_runs WHERE id <> :run_id
    ) AS earlier
    CROSS JOIN LATERAL generate_series(
        CASE WHEN least(s.started_at + interval '1 month', s.cancelled_at) > earlier.cutoff
             THEN 0
             ELSE coalesce((SELECT max(l.period_no) + 1 FROM invoice_lines l
                            WHERE l.subscription_id = s.id), 0)
        END,
        -- No month is shorter than 28 days (2,419,200 s): period n ends after n + 1 of
        -- them, a cancelled subscription's last period starts after n. A cheap bound; the
        -- WHERE clause is the exact test.
        floor(extract(epoch FROM :cutoff - s.started_at) / 2419200)::int
          - CASE WHEN s.cancelled_at IS NULL THEN 1 ELSE 0 END
    ) AS g(n)
    CROSS JOIN LATERAL (
        SELECT e.period_start, e.full_end, least(e.full_end, s.cancelled_at) AS period_end
        FROM (SELECT s.started_at + make_interval(months => g.n) AS period_start,
                     s.started_at + make_interval(months => g.n + 1) AS full_end) AS e
    ) AS p
    CROSS JOIN LATERAL (
        SELECT CASE WHEN p.period_end >= p.full_end THEN s.price_minor
               ELSE (s.price_minor * 2
                       * floor(extract(epoch FROM p.period_end - p.period_start))::bigint
                     + floor(extract(epoch FROM p.full_end - p.period_start))::bigint)
                    / (2 * floor(extract(epoch FROM p.full_end - p.period_start))::bigint)
               END AS amount_minor
    ) AS a
    LEFT JOIN unnest(CAST(:plan_ids AS text[]), CAST(:plan_names AS text[])) AS plans(id, name)
           ON plans.id = s.plan
    WHERE s.price_minor > 0 AND NOT s.billing_done
      AND s.started_at < :cutoff
      AND (s.cancelled_at IS NOT NULL OR s.started_at + interval '1 month' <= :cutoff)
      AND p.period_start < coalesce(s.cancelled_at, 'infinity')
      AND p.period_end <= :cutoff
      AND a.amount_minor > 0
),
invoice AS (
    INSERT INTO invoices (id, user_id, run_id, status, amount_minor, currency,
                          period_start, period_end, issued_at, due_at)
    SELECT gen_random_uuid(), user_id, :run_id, 'open', sum(amount_minor), min(currency),
           min(period_start), max(period_end), :issued_at, :due_at
    FROM due
    GROUP BY user_id
    RETURNING id
),
line AS (
    -- no ON CONFLICT: a second line for a period is a bug that must abort the whole run
    INSERT INTO invoice_lines (run_id, subscription_id, period_no, period_start,
                               period_end, description, amount_minor)
    SELECT :run_id, subscription_id, period_no, period_start, period_end, description,
           amount_minor
    FROM due
)
SELECT count(*) FROM invoice
"""


def _outbox_insert(event_type: str, source_sql: str, subject: str, data: str) -> str:
    """An INSERT … SELECT that writes one CloudEvent per row of `source_sql` into the outbox,
    in the envelope `shardz_common.events.envelope` produces."""
    # composed from this module's own constants only
    return f"""
WITH src AS ({source_sql})
INSERT INTO outbox (id, type, body)
SELECT e.event_id, '{event_type}', jsonb_build_object(
    'specversion', '1.0', 'id', e.event_id::text, 'source', 'billing', 'type', '{event_type}',
    'time', to_jsonb(now()), 'datacontenttype', 'application/json',
    'dataschema', 'urn:shardz:event:{event_type}:v1', 'subject', {subject},
    'data', {data})::text
FROM (SELECT gen_random_uuid() AS event_id, src.* FROM src) e
"""  # noqa: S608


_OVERDUE = """
UPDATE invoices SET status = 'overdue'
WHERE status = 'open'
  AND due_at <= CAST(:cutoff AS timestamptz) - make_interval(days => :grace_days)
"""

_SUSPEND = _outbox_insert(
    "account.suspended",
    """

    UPDATE accounts a SET status = 'suspended', status_at = now()
    FROM (SELECT DISTINCT user_id FROM invoices WHERE status = 'overdue') AS i
    WHERE a.user_id = i.user_id AND a.status = 'active'
    RETURNING a.user_id
    """,
    "e.user_id::text",
    "jsonb_build_object('user_id', e.user_id, 'reason', 'overdue')",
)


@dataclass(frozen=True)
class RunOutcome:
    run_id: int | None
    invoices_created: int
    invoices_overdue: int
    accounts_suspended: int


def _plan_params(plans: list[Plan]) -> dict[str, list[str]]:
    return {"plan_ids": [p.id for p in plans], "plan_names": [p.name for p in plans]}


async def _count(session: AsyncSession, sql: str, params: dict[str, Any]) -> int:
    result = await session.execute(text(sql), params)
    return int(cast(CursorResult[Any], result).rowcount)


async def _lock(session: AsyncSession, timeout_seconds: float) -> None:
    await session.execute(text(f"SET LOCAL lock_timeout = '{int(timeout_seconds * 1000)}ms'"))
    try:
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": RUN_LOCK})
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
            raise Conflict("another billing run is in progress; try again later") from exc
        raise
    await session.execute(text("SET LOCAL lock_timeout = 0"))


async def daily_run(
    session: AsyncSession,
    settings: BillingSettings,
    as_of: date,
    *,
    trigger: str = "admin",
    skip_if_done: bool = False,
) -> RunOutcome:
    """Run the invoicing as of `as_of` in the caller's transaction (which must commit)."""
    await _lock(session, settings.run_lock_timeout_seconds)
    if skip_if_done:
        done = await session.execute(
            text("SELECT 1 FROM billing_runs WHERE trigger = :t AND as_of >= :d LIMIT 1"),
            {"t": trigger, "d": as_of},
        )
        if done.first() is not None:
            return RunOutcome(None, 0, 0, 0)
    cutoff = run_cutoff(as_of)
    issued_at: datetime = cutoff
    run_id = (
        await session.execute(
            text("INSERT INTO billing_runs (as_of, trigger) VALUES (:d, :t) RETURNING id"),
            {"d": as_of, "t": trigger},
        )
    ).scalar_one()
    due_at = issued_at + timedelta(days=min(settings.due_days, 14))
    params = {
        "cutoff": cutoff,
        "run_id": run_id,
        "issued_at": issued_at,
        "due_at": due_at,
        **_plan_params(all_plans()),
    }
    # JIT compiles for seconds on the planner's (overestimated) row counts, and the per-user
    # aggregate would spill to disk at the default work_mem: both cost more than the run.
    await session.execute(text("SET LOCAL jit = off"))
    await session.execute(text("SET LOCAL work_mem = '64MB'"))
    await session.execute(text("SET LOCAL timezone = 'UTC'"))
    created = (await session.execute(text(_RUN), params)).scalar_one()
    if settings.fault_injection == "run_after_lines":
        log.warning("fault injection: exiting in the middle of a run", run_id=run_id)
        os._exit(137)
    overdue, suspended = await sweep_overdue(session, settings, cutoff)
    await session.execute(
        text("UPDATE billing_runs SET invoices_created = :c, invoices_overdue = :o WHERE id = :r"),
        {"c": created, "o": overdue, "r": run_id},
    )
    log.info(
        "billing run",
        as_of=str(as_of),
        trigger=trigger,
        invoices_created=created,
        invoices_overdue=overdue,
        accounts_suspended=suspended,
    )
    return RunOutcome(run_id, created, overdue, suspended)


async def sweep_overdue(
    session: AsyncSession, settings: BillingSettings, cutoff: datetime
) -> tuple[int, int]:
    """Open invoices past `due_at` + grace at `cutoff` turn overdue, and their accounts are
    suspended (`account.suspended`). Idempotent: a second sweep finds nothing to change."""
    params = {"cutoff": cutoff, "grace_days": settings.grace_days}
    overdue = await _count(session, _OVERDUE, params)
    suspended = await _count(session, _SUSPEND, params)
    if overdue or suspended:
        log.info("overdue sweep", invoices_overdue=overdue, accounts_suspended=suspended)
    return overdue, suspended


_FINISHED = """
UPDATE subscriptions s SET billing_done = true
WHERE s.id IN (
    SELECT s2.id FROM subscriptions s2
    WHERE s2.cancelled_at IS NOT NULL AND NOT s2.billing_done
      AND (s2.price_minor = 0 OR EXISTS (
          SELECT 1 FROM invoice_lines l
          WHERE l.subscription_id = s2.id AND l.period_end >= s2.cancelled_at))
    LIMIT :batch
)
"""


async def mark_finished(session: AsyncSession, batch: int = 5000) -> int:
    """Flag cancelled subscriptions whose last period is invoiced, so runs stop looking at
    them. Only an optimisation (the run finds nothing to bill for them either way), so it
    runs apart from the run, in batches."""
    return await _count(session, _FINISHED, {"batch": batch})
