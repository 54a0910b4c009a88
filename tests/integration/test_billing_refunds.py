"""Two payment attempts of one invoice that were both charged: the invoice is paid once, and
the second charge goes back to the customer through Paystack's `POST /refund` (the local
stand-in speaks its format), exactly once, however often its webhook arrives."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import psycopg

from shardz_common.testing.events import EventProbe
from tests.integration.billing_helpers import (
    charge_success,
    invoices,
    paystack_set,
    post_webhook,
    run_billing,
    sign,
    today,
    wait_invoice_status,
    wait_subscription,
)
from tests.integration.helpers import bearer, create_db, signup, wait_for


async def standin(env: dict[str, str], path: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        resp = await client.get(
            env["BILLING_PAYSTACK_BASE_URL"] + path,
            headers=bearer(env["BILLING_PAYSTACK_SECRET_KEY"]),
        )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def payment_rows(stack, invoice_id: str) -> dict[str, tuple[str, str | None]]:
    async with await psycopg.AsyncConnection.connect(stack.config.database_dsn("billing")) as c:
        rows = await (
            await c.execute(
                "SELECT reference, status, refund_id FROM payments WHERE invoice_id = %s",
                (uuid.UUID(invoice_id),),
            )
        ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


async def test_a_second_charge_of_a_paid_invoice_is_refunded_once(gateway, stack) -> None:
    env = stack.env
    secret = env["BILLING_PAYSTACK_SECRET_KEY"]
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token, plan="db-starter")
    await wait_subscription(gateway, token, db["id"], status="active")
    await run_billing(gateway, env, today() + timedelta(days=32))
    [invoice] = await invoices(gateway, token)
    amount = invoice["amount_minor"]

    # two checkout pages opened (two tabs), and the customer paid on both
    refs = []
    for _ in range(2):
        resp = await gateway.post(
            f"/v1/billing/invoices/{invoice['id']}/pay", headers=bearer(token)
        )
        assert resp.status_code == 200, resp.text
        refs.append(resp.json()["reference"])
        await paystack_set(env, refs[-1], status="success")
    first, second = refs

    async with EventProbe(env["PLATFORM_AMQP_URL"], keys="invoice.paid") as probe:
        body = charge_success(first, amount)
        assert (await post_webhook(gateway, body, sign(secret, body))).status_code == 200
        await wait_invoice_status(gateway, token, invoice["id"], "paid")
        body = charge_success(second, amount, channel="card")
        for _ in range(3):  # Paystack retries its webhook
            assert (await post_webhook(gateway, body, sign(secret, body))).status_code == 200

        async def refunded() -> bool:
            return (await payment_rows(stack, invoice["id"])).get(second, ("",))[0] == "refunded"

        await wait_for(refunded, timeout=30)
        await asyncio.sleep(3)  # two more settlement sweeps: nothing else happens
        assert len([e for e in probe.events if e["data"]["invoice_id"] == invoice["id"]]) == 1

    rows = await payment_rows(stack, invoice["id"])
    assert rows[first] == ("succeeded", None)
    assert rows[second][0] == "refunded" and rows[second][1]
    # at Paystack: the second charge was refunded in full, once; the first was kept
    made = (await standin(env, f"/_standin/transactions/{second}/refunds"))["data"]
    assert [(r["amount"], str(r["id"])) for r in made] == [(amount, rows[second][1])]
    assert (await standin(env, f"/transaction/verify/{second}"))["data"]["status"] == "reversed"
    assert (await standin(env, f"/_standin/transactions/{first}/refunds"))["data"] == []
    assert (await standin(env, f"/transaction/verify/{first}"))["data"]["status"] == "success"
    assert (await invoices(gateway, token))[0]["status"] == "paid"
