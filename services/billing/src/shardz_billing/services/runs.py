"""The daily run, set-based: a handful of statements in one transaction, whatever the number
of subscriptions.

1. every period that ended by the run's cutoff and is not invoiced yet becomes a line (pro
   rata, to the second, for a subscription cancelled mid-period);
2. one invoice per user with a positive total, its lines, `invoice.due` for each;
3. the subscriptions move on to their next unbilled period;
4. open invoices past `due_at` + grace turn `overdue` and their accounts are suspended.

Exactly once per (subscription, period): the unique key on invoice lines refuses a second
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

# Periods that ended by :cutoff and are not billed yet. `n` runs from the subscription's
# next unbilled period; the bound is generous (age() and calendar months disagree at month
# ends) and the exact test is the WHERE clause.
_LINES = """
CREATE TEMP TABLE run_lines ON COMMIT DROP AS
SELECT s.id AS subscription_id, s.user_id, s.currency, g.n, p.period_start, p.period_end,
       CASE WHEN p.period_end >= p.full_end THEN s.price_minor
            ELSE (s.price_minor * 2 * secs.used_s + secs.full_s) / (2 * secs.full_s)
       END AS amount_minor,
       coalesce(plans.name, s.plan) || ' (' || s.resource_type || ' ' || s.resource_id || ')'
         || CASE WHEN p.period_end < p.full_end THEN ', pro rata' ELSE '' END AS description
FROM subscriptions s
CROSS JOIN LATERAL generate_series(
    s.periods_billed,
    s.periods_billed + 1 + (extract(year FROM age(:cutoff, s.next_bill_at)) * 12
                            + extract(month FROM age(:cutoff, s.next_bill_at)))::int
) AS g(n)
CROSS JOIN LATERAL (
    SELECT billing_period_edge(s.started_at, g.n) AS period_start,
           billing_period_edge(s.started_at, g.n + 1) AS full_end,
           least(billing_period_edge(s.started_at, g.n + 1), s.cancelled_at) AS period_end
) AS p
CROSS JOIN LATERAL (
    SELECT floor(extract(epoch FROM p.period_end - p.period_start))::bigint AS used_s,
           floor(extract(epoch FROM p.full_end - p.period_start))::bigint AS full_s
) AS secs
LEFT JOIN unnest(CAST(:plan_ids AS text[]), CAST(:plan_names AS text[])) AS plans(id, name)
       ON plans.id = s.plan
WHERE s.next_bill_at <= :cutoff AND s.price_minor > 0 AND NOT s.billing_done
  AND p.period_start < coalesce(s.cancelled_at, 'infinity')
  AND p.period_end <= :cutoff
"""

_INVOICES = """
INSERT INTO invoices (id, user_id, run_id, status, amount_minor, currency,
                      period_start, period_end, issued_at, due_at)
SELECT gen_random_uuid(), user_id, :run_id, 'open', sum(amount_minor), min(currency),
       min(period_start), max(period_end), :issued_at, :due_at
FROM run_lines WHERE amount_minor > 0
GROUP BY user_id
"""

# No ON CONFLICT: a second line for a period is a bug that must abort the whole run.
_INVOICE_LINES = """
INSERT INTO invoice_lines (invoice_id, subscription_id, period_start, period_end,
                           description, amount_minor)
SELECT i.id, l.subscription_id, l.period_start, l.period_end, l.description, l.amount_minor
FROM run_lines l JOIN invoices i ON i.run_id = :run_id AND i.user_id = l.user_id
WHERE l.amount_minor > 0
"""

_ADVANCE = """
UPDATE subscriptions s
SET periods_billed = m.n + 1,
    next_bill_at = least(billing_period_edge(s.started_at, m.n + 2), s.cancelled_at),
    billing_done = s.cancelled_at IS NOT NULL
                   AND billing_period_edge(s.started_at, m.n + 1) >= s.cancelled_at
FROM (SELECT subscription_id, max(n) AS n FROM run_lines GROUP BY subscription_id) m
WHERE s.id = m.subscription_id
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


_INVOICE_DUE = _outbox_insert(
    "invoice.due",
    "SELECT * FROM invoices WHERE run_id = :run_id",
    "e.id::text",
    "jsonb_build_object('invoice_id', e.id, 'user_id', e.user_id, 'amount_minor',"
    " e.amount_minor, 'currency', e.currency, 'due_at', e.due_at)",
)

_OVERDUE = """
UPDATE invoices SET status = 'overdue'
WHERE status = 'open' AND due_at + make_interval(days => :grace_days) <= :cutoff
"""

_SUSPEND = _outbox_insert(
    "account.suspended",
    """

    UPDATE accounts a SET status = 'suspended', status_at = now()
    WHERE a.status = 'active'
      AND EXISTS (SELECT 1 FROM invoices i WHERE i.user_id = a.user_id AND i.status = 'overdue')
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
    params = {
        "cutoff": cutoff,
        "run_id": run_id,
        "issued_at": issued_at,
        "due_at": issued_at + timedelta(days=min(settings.due_days, 14)),
        "grace_days": settings.grace_days,
        **_plan_params(all_plans()),
    }
    await session.execute(text(_LINES), params)
    created = await _count(session, _INVOICES, params)
    await session.execute(text(_INVOICE_LINES), params)
    if settings.fault_injection == "run_after_lines":
        log.warning("fault injection: exiting in the middle of a run", run_id=run_id)
        os._exit(137)
    await session.execute(text(_ADVANCE), params)
    await session.execute(text(_INVOICE_DUE), params)
    overdue = await _count(session, _OVERDUE, params)
    suspended = await _count(session, _SUSPEND, params)
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
