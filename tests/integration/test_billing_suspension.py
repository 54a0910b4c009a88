"""An unpaid invoice past its grace suspends the account (the provisioner stops logins);
paying it reactivates the account and logins work again."""

from __future__ import annotations

from datetime import timedelta

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
from tests.integration.helpers import assert_problem, bearer, can_login, create_db, signup, wait_for


async def test_overdue_suspends_the_account_and_payment_reactivates_it(gateway, stack) -> None:
    env = stack.env
    grace = int(env.get("BILLING_GRACE_DAYS", "7"))
    user = await signup(gateway)
    uid, token = user["user"]["id"], user["access_token"]
    db = await create_db(gateway, token, plan="db-starter")
    await wait_subscription(gateway, token, db["id"], status="active")
    assert await can_login(db["uri"])

    issue_day = today() + timedelta(days=32)
    await run_billing(gateway, env, issue_day)
    [invoice] = await invoices(gateway, token)
    amqp = env["PLATFORM_AMQP_URL"]
    async with EventProbe(amqp, keys="#") as probe:
        # one day before the grace ends: still open, nothing suspended
        await run_billing(gateway, env, issue_day + timedelta(days=14 + grace - 2))
        assert (await invoices(gateway, token))[0]["status"] == "open"
        await run_billing(gateway, env, issue_day + timedelta(days=14 + grace))
        assert (await invoices(gateway, token))[-1]["status"] == "overdue"
        suspended = await probe.wait_for(
            "account.suspended", lambda e: e["data"]["user_id"] == uid, timeout=15
        )
        assert suspended["data"]["reason"] == "overdue"
        await probe.wait_for("db.suspended", lambda e: e["data"]["database_id"] == db["id"])
        assert not await can_login(db["uri"])  # NOLOGIN on the tenant cluster
        blocked = await gateway.post(
            "/v1/databases", json={"name": "more", "plan": "db-pro"}, headers=bearer(token)
        )
        assert_problem(blocked, 403, "account_suspended")

        # the user pays the overdue invoice (and whatever else is overdue by then)
        for item in await invoices(gateway, token):
            if item["status"] != "overdue":
                continue
            resp = await gateway.post(
                f"/v1/billing/invoices/{item['id']}/pay", headers=bearer(token)
            )
            assert resp.status_code == 200, resp.text
            reference = resp.json()["reference"]
            await paystack_set(env, reference, status="success")
            body = charge_success(reference, item["amount_minor"])
            secret = env["BILLING_PAYSTACK_SECRET_KEY"]
            assert (await post_webhook(gateway, body, sign(secret, body))).status_code == 200
            await wait_invoice_status(gateway, token, item["id"], "paid")
        reactivated = await probe.wait_for(
            "account.reactivated", lambda e: e["data"]["user_id"] == uid, timeout=15
        )
        assert reactivated["data"]["reason"] == "paid"
        await probe.wait_for("db.resumed", lambda e: e["data"]["database_id"] == db["id"])
    assert await can_login(db["uri"])
    assert invoice["id"] in {i["id"] for i in await invoices(gateway, token)}


async def test_paying_one_of_two_overdue_invoices_keeps_the_account_suspended(
    gateway, stack
) -> None:
    env = stack.env
    grace = int(env.get("BILLING_GRACE_DAYS", "7"))
    user = await signup(gateway)
    uid, token = user["user"]["id"], user["access_token"]
    db = await create_db(gateway, token, plan="db-starter")
    await wait_subscription(gateway, token, db["id"], status="active")
    first = today() + timedelta(days=32)
    await run_billing(gateway, env, first)
    async with EventProbe(env["PLATFORM_AMQP_URL"], keys="account.*") as probe:
        # the second period's run finds the first invoice past its grace
        await run_billing(gateway, env, first + timedelta(days=31))
        await probe.wait_for("account.suspended", lambda e: e["data"]["user_id"] == uid)
        await run_billing(gateway, env, first + timedelta(days=31 + 14 + grace))
        overdue = [i for i in await invoices(gateway, token) if i["status"] == "overdue"]
        assert len(overdue) == 2
        resp = await gateway.post(
            f"/v1/billing/invoices/{overdue[0]['id']}/pay", headers=bearer(token)
        )
        reference = resp.json()["reference"]
        await paystack_set(env, reference, status="success")
        body = charge_success(reference, overdue[0]["amount_minor"])
        secret = env["BILLING_PAYSTACK_SECRET_KEY"]
        assert (await post_webhook(gateway, body, sign(secret, body))).status_code == 200
        await wait_invoice_status(gateway, token, overdue[0]["id"], "paid")

        async def reactivated() -> bool:
            return any(
                e["type"] == "account.reactivated" and e["data"]["user_id"] == uid
                for e in probe.events
            )

        try:
            await wait_for(reactivated, timeout=3)
            raise AssertionError("reactivated with an invoice still overdue")
        except TimeoutError:
            pass
    assert not await can_login(db["uri"])
