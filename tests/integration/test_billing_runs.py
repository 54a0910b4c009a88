"""The daily run: pro rata to the second, one invoice per user and run, exactly once per
(subscription, period) under repeated, concurrent and interrupted runs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta

import httpx
import psycopg

from shardz_billing.domain.periods import add_months, prorate
from shardz_common.plans import get_plan
from tests.integration.billing_helpers import (
    billing_process,
    days_ago,
    invoices,
    iso,
    run_billing,
    seed_database,
    today,
    wait_subscription,
)
from tests.integration.helpers import (
    admin_token,
    bearer,
    free_port,
    publish_event,
    signup,
    wait_http,
)

PRO = get_plan("db-pro", "database")
STARTER = get_plan("db-starter", "database")
assert PRO is not None and STARTER is not None


def seconds(a: datetime, b: datetime) -> int:
    return int((b - a).total_seconds())


async def billing_rows(stack, sql: str, *args: object) -> list[tuple]:
    dsn = stack.env["BILLING_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        return await (await conn.execute(sql, args)).fetchall()


async def test_a_database_deleted_mid_period_is_charged_pro_rata(gateway, stack) -> None:
    amqp = stack.env["PLATFORM_AMQP_URL"]
    user = await signup(gateway)
    uid, token = user["user"]["id"], user["access_token"]
    start, end = days_ago(20).replace(microsecond=0), days_ago(5).replace(microsecond=0)
    db_id = await seed_database(amqp, uid, "db-pro", start)
    await wait_subscription(gateway, token, db_id, status="active")
    await publish_event(amqp, "db.deleted", {"database_id": db_id, "user_id": uid}, time=iso(end))
    sub = await wait_subscription(gateway, token, db_id, status="cancelled")
    assert datetime.fromisoformat(sub["current_period_end"]) == end

    await run_billing(gateway, stack.env, today())
    [invoice] = await invoices(gateway, token)
    [line] = invoice["lines"]
    expected = prorate(PRO.price_minor, seconds(start, end), seconds(start, add_months(start, 1)))
    assert 0 < expected < PRO.price_minor
    assert line["amount_minor"] == invoice["amount_minor"] == expected
    assert datetime.fromisoformat(line["period_end"]) == end
    # nothing is left to bill for it, however far ahead a run looks
    await run_billing(gateway, stack.env, today() + timedelta(days=400))
    assert len(await invoices(gateway, token)) == 1


async def test_an_upgrade_mid_period_gives_two_pro_rata_lines_on_one_invoice(
    gateway, stack
) -> None:
    amqp = stack.env["PLATFORM_AMQP_URL"]
    user = await signup(gateway)
    uid, token = user["user"]["id"], user["access_token"]
    t0, t1, t2 = (days_ago(d).replace(microsecond=0) for d in (20, 10, 2))
    db_id = await seed_database(amqp, uid, "db-starter", t0)
    await wait_subscription(gateway, token, db_id, plan="db-starter")
    await publish_event(
        amqp,
        "db.plan_changed",
        {
            "database_id": db_id,
            "user_id": uid,
            "plan": "db-pro",
            "previous_plan": "db-starter",
            "changed_at": iso(t1),
        },
    )
    await wait_subscription(gateway, token, db_id, plan="db-pro", status="active")
    await publish_event(amqp, "db.deleted", {"database_id": db_id, "user_id": uid}, time=iso(t2))
    await wait_subscription(gateway, token, db_id, plan="db-pro", status="cancelled")

    await run_billing(gateway, stack.env, today())
    [invoice] = await invoices(gateway, token)
    lines = sorted(invoice["lines"], key=lambda x: x["period_start"])
    assert [
        (datetime.fromisoformat(x["period_start"]), datetime.fromisoformat(x["period_end"]))
        for x in lines
    ] == [(t0, t1), (t1, t2)]
    assert lines[0]["amount_minor"] == prorate(
        STARTER.price_minor, seconds(t0, t1), seconds(t0, add_months(t0, 1))
    )
    assert lines[1]["amount_minor"] == prorate(
        PRO.price_minor, seconds(t1, t2), seconds(t1, add_months(t1, 1))
    )
    assert invoice["amount_minor"] == sum(x["amount_minor"] for x in lines)


async def test_a_day_run_again_bills_only_periods_that_appeared_since(gateway, stack) -> None:
    amqp = stack.env["PLATFORM_AMQP_URL"]
    user = await signup(gateway)
    uid, token = user["user"]["id"], user["access_token"]
    first = await seed_database(amqp, uid, "db-starter", days_ago(45))
    await wait_subscription(gateway, token, first, status="active")
    await run_billing(gateway, stack.env, today())
    assert [len(i["lines"]) for i in await invoices(gateway, token)] == [1]

    second = await seed_database(amqp, uid, "db-pro", days_ago(40))
    await wait_subscription(gateway, token, second, status="active")
    await run_billing(gateway, stack.env, today())
    found = await invoices(gateway, token)
    assert len(found) == 2  # one per run
    billed = sorted(line["subscription_id"] for i in found for line in i["lines"])
    assert len(billed) == len(set(billed)) == 2


async def test_two_concurrent_runs_through_two_api_processes_invoice_once(gateway, stack) -> None:
    amqp = stack.env["PLATFORM_AMQP_URL"]
    users = [await signup(gateway) for _ in range(3)]
    for u in users:
        db_id = await seed_database(amqp, u["user"]["id"], "db-starter", days_ago(70))
        await wait_subscription(gateway, u["access_token"], db_id, status="active")
    port = free_port()
    admin = await admin_token(gateway, stack.env)
    with billing_process(stack, "api", BILLING_PORT=str(port)):
        await wait_http(f"http://127.0.0.1:{port}/readyz")
        async with httpx.AsyncClient(timeout=60) as direct:
            body = {"as_of": today().isoformat()}
            a, b = await asyncio.gather(
                gateway.post("/v1/billing/runs", json=body, headers=bearer(admin)),
                direct.post(
                    f"http://127.0.0.1:{port}/v1/billing/runs", json=body, headers=bearer(admin)
                ),
            )
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    for u in users:
        found = await invoices(gateway, u["access_token"])
        # two monthly periods ended in 70 days: both on one invoice, each once
        assert len(found) == 1
        assert len(found[0]["lines"]) == 2
        assert found[0]["amount_minor"] == 2 * STARTER.price_minor
    ids = [str(u["user"]["id"]) for u in users]
    dupes = await billing_rows(
        stack,
        "SELECT subscription_id, period_start, count(*) FROM invoice_lines l"
        " JOIN subscriptions s ON s.id = l.subscription_id WHERE s.user_id::text = ANY(%s)"
        " GROUP BY 1, 2 HAVING count(*) > 1",
        ids,
    )
    assert dupes == []


async def test_a_run_killed_midway_and_run_again_gives_the_same_invoices(gateway, stack) -> None:
    amqp = stack.env["PLATFORM_AMQP_URL"]
    start = days_ago(50).replace(microsecond=0)
    pairs = []
    for _ in range(2):  # one user for the interrupted run, a twin for a clean run
        u = await signup(gateway)
        db_id = await seed_database(amqp, u["user"]["id"], "db-pro", start)
        await wait_subscription(gateway, u["access_token"], db_id, status="active")
        pairs.append(u)
    crashed, twin = pairs
    port = free_port()
    admin = await admin_token(gateway, stack.env)
    with billing_process(
        stack, "api", BILLING_PORT=str(port), BILLING_FAULT_INJECTION="run_after_lines"
    ) as proc:
        await wait_http(f"http://127.0.0.1:{port}/readyz")
        async with httpx.AsyncClient(timeout=60) as direct:
            try:
                await direct.post(
                    f"http://127.0.0.1:{port}/v1/billing/runs",
                    json={"as_of": today().isoformat()},
                    headers=bearer(admin),
                )
                raise AssertionError("the run should have died")
            except httpx.HTTPError:
                pass
        assert proc.wait(10) == 137
    assert await invoices(gateway, crashed["access_token"]) == []  # nothing half-done
    await run_billing(gateway, stack.env, today())
    await run_billing(gateway, stack.env, today())

    def shape(items: list[dict]) -> list[tuple]:
        return [
            (i["amount_minor"], i["status"], i["period_start"], i["period_end"], len(i["lines"]))
            for i in items
        ]

    got = await invoices(gateway, crashed["access_token"])
    assert shape(got) == shape(await invoices(gateway, twin["access_token"]))
    assert len(got) == 1 and got[0]["amount_minor"] == PRO.price_minor


async def test_subscriptions_follow_users_and_usage_is_recorded_once(gateway, stack) -> None:
    amqp = stack.env["PLATFORM_AMQP_URL"]
    user = await signup(gateway)
    uid, token = user["user"]["id"], user["access_token"]
    storage = await wait_subscription(gateway, token, uid, status="active")
    assert storage["resource_type"] == "storage" and storage["plan"] == "storage-free"
    db_id = await seed_database(amqp, uid, "db-starter", days_ago(3))
    await wait_subscription(gateway, token, db_id, status="active")

    measured = datetime.now(UTC).replace(microsecond=0).isoformat()
    sample = {"user_id": uid, "used_bytes": 1234, "object_count": 2, "measured_at": measured}
    for _ in range(2):  # two deliveries of one sample (different event ids)
        await publish_event(amqp, "storage.usage.reported", sample)
    await publish_event(
        amqp,
        "db.usage.reported",
        {"database_id": db_id, "user_id": uid, "size_bytes": 99, "measured_at": measured},
    )

    async def ledger() -> list[tuple]:
        return await billing_rows(
            stack,
            # this test's samples only: the storage service reports the new space too
            "SELECT resource_type, metric, quantity FROM usage_records WHERE user_id::text = %s"
            " AND measured_at = %s::timestamptz ORDER BY 1",
            uid,
            measured,
        )

    for _ in range(100):
        if len(await ledger()) >= 2:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    assert await ledger() == [("database", "size_bytes", 99), ("storage", "used_bytes", 1234)]

    await publish_event(amqp, "user.deleted", {"user_id": uid})
    await wait_subscription(gateway, token, db_id, status="cancelled")
    await wait_subscription(gateway, token, uid, status="cancelled")


async def test_paying_without_a_paystack_key_is_503_unavailable(gateway, stack) -> None:
    amqp = stack.env["PLATFORM_AMQP_URL"]
    user = await signup(gateway)
    uid, token = user["user"]["id"], user["access_token"]
    db_id = await seed_database(amqp, uid, "db-starter", days_ago(35))
    await wait_subscription(gateway, token, db_id, status="active")
    await run_billing(gateway, stack.env, today())
    [invoice] = await invoices(gateway, token)
    port = free_port()
    with billing_process(stack, "api", BILLING_PORT=str(port), BILLING_PAYSTACK_SECRET_KEY=""):
        await wait_http(f"http://127.0.0.1:{port}/readyz")
        async with httpx.AsyncClient() as direct:
            resp = await direct.post(
                f"http://127.0.0.1:{port}/v1/billing/invoices/{invoice['id']}/pay",
                headers=bearer(token),
            )
    assert resp.status_code == 503 and resp.json()["code"] == "unavailable"
    assert "BILLING_PAYSTACK_SECRET_KEY" in resp.json()["detail"]
    assert (
        await billing_rows(
            stack, "SELECT 1 FROM payments WHERE invoice_id = %s", uuid.UUID(invoice["id"])
        )
        == []
    )


async def test_two_schedulers_run_a_day_once(gateway, stack) -> None:
    """What every billing worker's scheduler does each minute, from two workers at once."""
    from shardz_billing.config import BillingSettings
    from shardz_billing.services.runs import daily_run
    from shardz_common.db import make_engine, make_sessionmaker

    settings = BillingSettings(database_url=stack.env["BILLING_DATABASE_URL"])
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    day = today() - timedelta(days=3)
    trigger = f"schedule-{uuid.uuid4().hex[:8]}"  # apart from the stack's own scheduler

    async def schedule() -> int | None:
        async with sessions() as s, s.begin():
            outcome = await daily_run(s, settings, day, trigger=trigger, skip_if_done=True)
        return outcome.run_id

    try:
        ran = await asyncio.gather(schedule(), schedule())
        assert await schedule() is None  # and a third pass later finds it done
    finally:
        await engine.dispose()
    assert len([r for r in ran if r is not None]) == 1
    rows = await billing_rows(
        stack, "SELECT count(*) FROM billing_runs WHERE trigger = %s AND as_of = %s", trigger, day
    )
    assert rows == [(1,)]


async def test_month_end_periods_over_a_year_are_each_billed_once(gateway, stack) -> None:
    """A subscription begun on the 31st: periods end on the 28th/29th/30th/31st as the
    calendar allows, each is billed once, however many runs happen in between."""
    from shardz_billing.config import BillingSettings
    from shardz_billing.services import subscriptions as subs
    from shardz_billing.services.runs import daily_run
    from shardz_common.db import make_engine, make_sessionmaker

    user = await signup(gateway)
    uid, token = uuid.UUID(user["user"]["id"]), user["access_token"]
    start = datetime(2025, 1, 31, 23, 30, tzinfo=UTC)
    settings = BillingSettings(database_url=stack.env["BILLING_DATABASE_URL"])
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as s, s.begin():
            await subs.open_subscription(
                s,
                user_id=uid,
                resource_type="database",
                resource_id=str(uuid.uuid4()),
                plan_id="db-starter",
                started_at=start,
            )
        for day in ("2025-03-30", "2025-03-31", "2025-07-15", "2026-01-31", "2026-02-01"):
            async with sessions() as s, s.begin():
                await daily_run(s, settings, date.fromisoformat(day))
    finally:
        await engine.dispose()
    lines = sorted(
        (line for i in await invoices(gateway, token) for line in i["lines"]),
        key=lambda x: x["period_start"],
    )
    ends = [datetime.fromisoformat(x["period_end"]).date().isoformat() for x in lines]
    assert ends == [
        "2025-02-28", "2025-03-31", "2025-04-30", "2025-05-31", "2025-06-30",
        "2025-07-31", "2025-08-31", "2025-09-30", "2025-10-31", "2025-11-30",
        "2025-12-31", "2026-01-31",
    ]  # fmt: skip
    assert all(x["amount_minor"] == STARTER.price_minor for x in lines)
