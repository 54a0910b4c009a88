"""Helpers of the billing tests: admin runs, Paystack's side (the local stand-in's API and
webhooks signed like Paystack's), and subscriptions seeded through events."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from tests.integration.helpers import admin_token, bearer, publish_event, service_process, wait_for


def today() -> date:
    return datetime.now(UTC).date()


async def run_billing(gateway: httpx.AsyncClient, env: dict[str, str], as_of: date) -> int:
    token = await admin_token(gateway, env)
    resp = await gateway.post(
        "/v1/billing/runs", json={"as_of": as_of.isoformat()}, headers=bearer(token)
    )
    assert resp.status_code == 200, resp.text
    created: int = resp.json()["invoices_created"]
    return created


async def invoices(gateway: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    resp = await gateway.get("/v1/billing/invoices", headers=bearer(token))
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def subscriptions(gateway: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    resp = await gateway.get("/v1/billing/subscriptions", headers=bearer(token))
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def wait_subscription(
    gateway: httpx.AsyncClient, token: str, resource_id: str, **expect: str
) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        for sub in await subscriptions(gateway, token):
            if sub["resource_id"] == resource_id and all(sub[k] == v for k, v in expect.items()):
                return sub
        return None

    sub: dict[str, Any] = await wait_for(found, timeout=20)
    return sub


def iso(at: datetime) -> str:
    return at.isoformat()


async def seed_database(
    amqp: str, user_id: str, plan: str, at: datetime, database_id: str | None = None
) -> str:
    """A `db.provisioned` as the provisioner would send it, `at` a time in the past."""
    database_id = database_id or str(uuid.uuid4())
    await publish_event(
        amqp,
        "db.provisioned",
        {
            "database_id": database_id,
            "user_id": user_id,
            "engine": "postgres",
            "cluster": "local-1",
            "plan": plan,
        },
        time=iso(at),
    )
    return database_id


def sign(secret_key: str, body: bytes) -> str:
    return hmac.new(secret_key.encode(), body, hashlib.sha512).hexdigest()


def charge_success(reference: str, amount: int, **extra: Any) -> bytes:
    data = {
        "id": 4_100_000_000 + len(extra),
        "status": "success",
        "reference": reference,
        "amount": amount,
        "currency": "NGN",
        "paid_at": datetime.now(UTC).isoformat(),
        **extra,
    }
    return json.dumps({"event": "charge.success", "data": data}).encode()


async def post_webhook(
    gateway: httpx.AsyncClient, body: bytes, signature: str | None
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-paystack-signature"] = signature
    return await gateway.post("/v1/billing/webhooks/paystack", content=body, headers=headers)


async def paystack_set(env: dict[str, str], reference: str, **state: Any) -> None:
    """Tell the Paystack stand-in what `verify` answers for a transaction."""
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            f"{env['BILLING_PAYSTACK_BASE_URL']}/_standin/transactions/{reference}",
            json=state,
            headers=bearer(env["BILLING_PAYSTACK_SECRET_KEY"]),
        )
    assert resp.status_code == 200, resp.text


async def wait_invoice_status(
    gateway: httpx.AsyncClient, token: str, invoice_id: str, status: str, timeout: float = 20
) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        resp = await gateway.get(f"/v1/billing/invoices/{invoice_id}", headers=bearer(token))
        body: dict[str, Any] = resp.json()
        return body if body["status"] == status else None

    found: dict[str, Any] = await wait_for(reached, timeout=timeout)
    return found


@contextlib.contextmanager
def billing_process(stack: Any, command: str, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """An extra billing process (api or worker) on the test stack, with env overrides."""
    with service_process(stack, "billing", command, **env) as proc:
        yield proc


def days_ago(n: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=n)
