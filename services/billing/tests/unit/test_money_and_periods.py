"""Rules without I/O: periods, pro rata, the scheduler's day, webhook signatures, and money
that is never a float anywhere billing stores or computes it."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import BigInteger, Float, Numeric

from shardz_billing.db.tables import metadata
from shardz_billing.domain.periods import add_months, period_containing, prorate, run_cutoff
from shardz_billing.services.paystack import sign, signature_valid
from shardz_billing.worker import scheduled_as_of
from shardz_common.plans import all_plans

SERVICE = Path(__file__).resolve().parents[2]


def test_money_columns_are_integers_and_nothing_is_a_float() -> None:
    for table in metadata.tables.values():
        for column in table.columns:
            assert not isinstance(column.type, Float | Numeric), f"{table.name}.{column.name}"
            if column.name.endswith("_minor"):
                assert isinstance(column.type, BigInteger), f"{table.name}.{column.name}"
    for path in (SERVICE / "migrations" / "versions").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"\b(Float|Numeric|REAL|DOUBLE PRECISION|money)\b", text), path
        assert not re.search(r"::\s*(float|numeric|real|double)", text, re.I), path
    for source in (SERVICE / "src").rglob("*.py"):
        text = source.read_text()
        assert "float(" not in text, source
    for plan in all_plans():
        assert type(plan.price_minor) is int


def test_periods_are_calendar_months_clamped_at_month_ends() -> None:
    start = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
    assert add_months(start, 1) == datetime(2026, 2, 28, 10, 0, tzinfo=UTC)
    assert add_months(start, 2) == datetime(2026, 3, 31, 10, 0, tzinfo=UTC)
    assert add_months(start, 13) == datetime(2027, 2, 28, 10, 0, tzinfo=UTC)
    assert add_months(datetime(2028, 1, 30, tzinfo=UTC), 1) == datetime(2028, 2, 29, tzinfo=UTC)
    assert period_containing(start, datetime(2026, 3, 1, tzinfo=UTC)) == (
        datetime(2026, 2, 28, 10, 0, tzinfo=UTC),
        datetime(2026, 3, 31, 10, 0, tzinfo=UTC),
    )
    assert period_containing(start, start) == (start, add_months(start, 1))


@pytest.mark.parametrize(
    ("price", "used", "period", "expected"),
    [
        (1_500_000, 14 * 86400, 28 * 86400, 750_000),
        (500_000, 0, 30 * 86400, 0),
        (500_000, 30 * 86400, 30 * 86400, 500_000),
        (500_000, 31 * 86400, 30 * 86400, 500_000),
        (3, 1, 2, 2),  # half rounds up
        (1, 1, 3, 0),
    ],
)
def test_pro_rata_is_to_the_second_and_rounds_half_up(
    price: int, used: int, period: int, expected: int
) -> None:
    assert prorate(price, used, period) == expected


def test_a_run_bills_through_the_end_of_its_day_and_the_scheduler_bills_yesterday() -> None:
    assert run_cutoff(date(2026, 3, 1)) == datetime(2026, 3, 2, tzinfo=UTC)
    at = datetime(2026, 3, 2, 0, 5, tzinfo=UTC)
    assert scheduled_as_of(at, "00:05").date() == date(2026, 3, 1)
    assert scheduled_as_of(at.replace(minute=4), "00:05").date() == date(2026, 2, 28)


def test_webhook_signature_is_hmac_sha512_of_the_raw_body() -> None:
    body = b'{"event":"charge.success"}'
    good = sign("sk_test_key", body)
    assert len(good) == 128 and signature_valid("sk_test_key", body, good)
    assert signature_valid("sk_test_key", body, good.upper())
    assert not signature_valid("sk_test_key", body + b" ", good)
    assert not signature_valid("sk_test_other", body, good)
    assert not signature_valid("sk_test_key", body, None)
    assert not signature_valid(None, body, good)  # no key configured: nothing is trusted
