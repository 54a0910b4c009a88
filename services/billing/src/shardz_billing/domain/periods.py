"""Billing periods and pro rata amounts: the rules the SQL run applies, in plain Python for the
API's "current period" and for tests. Amounts are integers of minor units, rounded half up."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta


def add_months(start: datetime, months: int) -> datetime:
    """`start` plus whole calendar months in UTC, the day clamped to the month's end (as
    PostgreSQL's `+ interval '1 month'` does, so Jan 31 -> Feb 28/29 -> Mar 28)."""
    start = start.astimezone(UTC)
    index = start.year * 12 + start.month - 1 + months
    year, month = divmod(index, 12)
    day = min(start.day, calendar.monthrange(year, month + 1)[1])
    return start.replace(year=year, month=month + 1, day=day)


def period_containing(started_at: datetime, at: datetime) -> tuple[datetime, datetime]:
    """The monthly period of a subscription begun at `started_at` that contains `at`."""
    if at < started_at:
        return started_at, add_months(started_at, 1)
    years = at.year - started_at.year
    n = max(0, years * 12 + at.month - started_at.month - 1)
    while add_months(started_at, n + 1) <= at:
        n += 1
    return add_months(started_at, n), add_months(started_at, n + 1)


def prorate(price_minor: int, used_seconds: int, period_seconds: int) -> int:
    """`price_minor` for the used part of a period, to the second, rounded half up."""
    if period_seconds <= 0 or used_seconds >= period_seconds:
        return price_minor
    used = max(0, used_seconds)
    return (price_minor * used * 2 + period_seconds) // (2 * period_seconds)


def run_cutoff(as_of: date) -> datetime:
    """A run as of a day bills every period that ended by the end of that day (UTC)."""
    return datetime.combine(as_of + timedelta(days=1), time(0), tzinfo=UTC)
