"""CONTRACT section 7 end to end through the gateway: a paid database is invoiced once, paid
through Paystack (the local stand-in speaking its API), and only a webhook that is signed
and confirmed by Paystack's own verify settles it."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from shardz_common.events import CloudEvent, InvoiceDue
from shardz_common.plans import get_plan
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
from tests.integration.helpers import admin_token, assert_problem, bearer, create_db, signup

STARTER = get_plan("db-starter", "database")
assert STARTER is not None


async def test_plans_are_public_and_priced_in_kobo(gateway) -> None:
    resp = await gateway.get("/v1/billing/plans")
    assert resp.status_code == 200
    items = {p["id"]: p for p in resp.json()["items"]}
    assert items["free"]["resource_type"] == "database" and items["free"]["price_minor"] == 0
    assert items["storage-free"]["resource_type"] == "storage"
    paid = [p for p in items.values() if p["resource_type"] == "database" and p["price_minor"]]
    assert len(paid) >= 2 and any(
        p["resource_type"] == "storage" and p["price_minor"] for p in items.values()
    )
    for plan in items.values():
        assert type(plan["price_minor"]) is int and plan["currency"] == "NGN"
        assert plan["interval"] == "month" and isinstance(plan["limits"], dict)


async def test_paid_database_is_invoiced_once_and_settled_by_a_verified_webhook(
    gateway, stack
) -> None:
    env = stack.env
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token, plan="db-starter")
    sub = await wait_subscription(gateway, token, db["id"], plan="db-starter", status="active")
    assert sub["resource_type"] == "database"
    assert any(s["resource_type"] == "storage" for s in await gateway_subs(gateway, token))

    as_of = today() + timedelta(days=32)
    async with EventProbe(env["PLATFORM_AMQP_URL"], keys="invoice.due") as due_probe:
        assert await run_billing(gateway, env, as_of) >= 1
        [invoice] = await invoices(gateway, token)
        due = await due_probe.wait_for(
            "invoice.due", lambda e: e["data"]["invoice_id"] == invoice["id"]
        )
    # the run writes this event in SQL: it must be the envelope consumers parse
    event = InvoiceDue.model_validate(CloudEvent.model_validate(due).data)
    assert event.amount_minor == STARTER.price_minor and event.currency == "NGN"
    assert event.due_at == datetime.fromisoformat(invoice["due_at"])
    assert due["source"] == "billing" and due["subject"] == invoice["id"]
    assert invoice["status"] == "open" and invoice["currency"] == "NGN"
    assert invoice["amount_minor"] == STARTER.price_minor
    [line] = invoice["lines"]
    assert line["subscription_id"] == sub["id"] and line["amount_minor"] == STARTER.price_minor
    issued = datetime.fromisoformat(invoice["issued_at"])
    assert datetime.fromisoformat(invoice["due_at"]) - issued <= timedelta(days=14)

    # the same day again: nothing more
    assert await run_billing(gateway, env, as_of) == 0
    assert len(await invoices(gateway, token)) == 1

    paid = await gateway.post(f"/v1/billing/invoices/{invoice['id']}/pay", headers=bearer(token))
    assert paid.status_code == 200, paid.text
    reference = paid.json()["reference"]
    assert paid.json()["authorization_url"].startswith("http")
    other = await signup(gateway)
    foreign = await gateway.post(
        f"/v1/billing/invoices/{invoice['id']}/pay", headers=bearer(other["access_token"])
    )
    assert_problem(foreign, 404, "not_found")

    # the customer pays at Paystack; verify now answers success for the full amount
    await paystack_set(env, reference, status="success")
    body = charge_success(reference, invoice["amount_minor"])
    secret = env["BILLING_PAYSTACK_SECRET_KEY"]
    for forged in (sign("sk_test_not_the_key", body), None, "00" * 64, sign(secret, body + b" ")):
        assert_problem(await post_webhook(gateway, body, forged), 401, "unauthenticated")
    await asyncio.sleep(2.5)  # the worker's settlement sweep runs every 2 s
    assert (await invoices(gateway, token))[0]["status"] == "open"

    amqp = env["PLATFORM_AMQP_URL"]
    async with EventProbe(amqp, keys="invoice.paid") as probe:
        ok = await post_webhook(gateway, body, sign(secret, body))
        assert ok.status_code == 200, ok.text
        settled = await wait_invoice_status(gateway, token, invoice["id"], "paid")
        assert settled["paid_at"] is not None
        await probe.wait_for("invoice.paid", lambda e: e["data"]["invoice_id"] == invoice["id"])
        # Paystack retries: five concurrent copies change nothing
        copies = await asyncio.gather(
            *(post_webhook(gateway, body, sign(secret, body)) for _ in range(5))
        )
        assert [c.status_code for c in copies] == [200] * 5
        await asyncio.sleep(3)
        mine = [e for e in probe.events if e["data"]["invoice_id"] == invoice["id"]]
        assert len(mine) == 1
    assert (await invoices(gateway, token))[0]["status"] == "paid"
    again = await gateway.post(f"/v1/billing/invoices/{invoice['id']}/pay", headers=bearer(token))
    assert_problem(again, 409, "conflict")


async def gateway_subs(gateway, token: str) -> list[dict]:
    resp = await gateway.get("/v1/billing/subscriptions", headers=bearer(token))
    assert resp.status_code == 200
    return resp.json()["items"]


async def test_a_signed_webhook_settles_nothing_that_paystack_does_not_confirm(
    gateway, stack
) -> None:
    env = stack.env
    secret = env["BILLING_PAYSTACK_SECRET_KEY"]
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token, plan="db-starter")
    await wait_subscription(gateway, token, db["id"], status="active")
    await run_billing(gateway, env, today() + timedelta(days=32))
    [invoice] = await invoices(gateway, token)
    amount = invoice["amount_minor"]

    async def attempt(**verify_says: object) -> str:
        resp = await gateway.post(
            f"/v1/billing/invoices/{invoice['id']}/pay", headers=bearer(token)
        )
        assert resp.status_code == 200, resp.text
        reference = resp.json()["reference"]
        await paystack_set(env, reference, **verify_says)
        body = charge_success(reference, amount)  # the webhook claims the full amount
        assert (await post_webhook(gateway, body, sign(secret, body))).status_code == 200
        return reference

    await attempt(status="success", amount=amount - 100)  # paid less than asked
    await attempt(status="failed")
    await attempt(status="success", amount=amount, currency="USD")
    await asyncio.sleep(3)
    assert (await invoices(gateway, token))[0]["status"] == "open"

    await attempt(status="success")  # the same pipeline settles a confirmed payment
    await wait_invoice_status(gateway, token, invoice["id"], "paid")


async def test_webhook_bodies_over_64_kib_and_non_events_are_refused(gateway, stack) -> None:
    secret = stack.env["BILLING_PAYSTACK_SECRET_KEY"]
    big = b'{"event": "charge.success", "data": {"pad": "' + b"x" * 70_000 + b'"}}'
    resp = await post_webhook(gateway, big, sign(secret, big))
    assert resp.status_code == 413
    junk = b"[1, 2, 3]"
    assert_problem(await post_webhook(gateway, junk, sign(secret, junk)), 422, "validation_error")


async def test_only_administrators_run_billing_and_bad_dates_are_422(gateway, stack) -> None:
    user = await signup(gateway)
    resp = await gateway.post(
        "/v1/billing/runs", json={"as_of": "2026-01-01"}, headers=bearer(user["access_token"])
    )
    assert resp.status_code == 403
    resp = await gateway.post("/v1/billing/runs", json={"as_of": "2026-01-01"})
    assert_problem(resp, 401, "unauthenticated")
    admin = await admin_token(gateway, stack.env)
    bad = await gateway.post("/v1/billing/runs", json={"as_of": "yesterday"}, headers=bearer(admin))
    assert_problem(bad, 422, "validation_error")


async def test_paying_at_the_checkout_page_settles_through_paystacks_own_webhook(
    gateway, stack
) -> None:
    """The `make dev` path: the payer completes Paystack's checkout, Paystack (the stand-in)
    signs and sends `charge.success` to the gateway, billing verifies and settles."""
    import httpx

    env = stack.env
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token, plan="db-starter")
    await wait_subscription(gateway, token, db["id"], status="active")
    await run_billing(gateway, env, today() + timedelta(days=32))
    [invoice] = await invoices(gateway, token)
    resp = await gateway.post(f"/v1/billing/invoices/{invoice['id']}/pay", headers=bearer(token))
    url = resp.json()["authorization_url"]
    async with httpx.AsyncClient() as payer:
        page = await payer.get(url)
        assert page.status_code == 200 and "Pay" in page.text
        done = await payer.post(url, data={"outcome": "success"})
        # and is sent back to the dashboard's result page (BILLING_PAYSTACK_CALLBACK_URL)
        assert done.status_code == 303
        assert "/billing/result?reference=" in done.headers["location"]
    await wait_invoice_status(gateway, token, invoice["id"], "paid")
