"""A local Paystack: the part of its API billing uses, in Paystack's own wire format, so the
billing service cannot tell it from https://api.paystack.co.

- `POST /transaction/initialize` and `GET /transaction/verify/:reference`, bearer secret key,
  `{"status", "message", "data"}` bodies, Paystack's error messages;
- a checkout page at `authorization_url`: paying there marks the transaction `success` and
  sends a `charge.success` webhook signed with `x-paystack-signature` (hex HMAC-SHA512 of the
  body under the secret key), as Paystack does;
- `POST /refund` `{"transaction", "amount"?}` (a reference or id): a full or partial refund,
  queued as Paystack answers it; a fully refunded transaction verifies as `reversed`, and a
  further refund is refused with Paystack's message;
- for tests, `POST /_standin/transactions/:reference` `{"status", "amount"}` sets what verify
  answers (e.g. a payment of less than was asked), without sending anything, and
  `GET /_standin/transactions/:reference/refunds` lists the refunds made.

Transactions live in memory: a restart forgets them, as a test mode would.

    PAYSTACK_STANDIN_SECRET_KEY=sk_test_... python -m shardz_devstack.paystack_standin \\
        --port 8190 --webhook-url http://127.0.0.1:8080/v1/billing/webhooks/paystack \\
        --webhook-host api.localhost
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import html
import itertools
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

SECRET_ENV = "PAYSTACK_STANDIN_SECRET_KEY"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Transaction:
    id: int
    reference: str
    access_code: str
    email: str
    amount: int
    currency: str
    callback_url: str | None
    metadata: Any
    status: str = "abandoned"  # Paystack's word for "initialized, not paid"
    created_at: str = field(default_factory=_now)
    paid_at: str | None = None
    refunded: int = 0
    refunds: list[dict[str, Any]] = field(default_factory=list)

    def data(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "domain": "test",
            "status": self.status,
            "reference": self.reference,
            "amount": self.amount,
            "message": None,
            "gateway_response": "Successful" if self.status == "success" else "Declined",
            "paid_at": self.paid_at,
            "created_at": self.created_at,
            "channel": "card",
            "currency": self.currency,
            "ip_address": "127.0.0.1",
            "metadata": self.metadata,
            "fees": None,
            "customer": {"id": self.id, "email": self.email, "customer_code": f"CUS_{self.id}"},
            "authorization": {"channel": "card", "card_type": "visa", "last4": "4081"},
        }


def _fail(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": False, "message": message}, status_code=status)


def sign(secret_key: str, body: bytes) -> str:
    return hmac.new(secret_key.encode(), body, hashlib.sha512).hexdigest()


def create_app(secret_key: str, webhook_url: str | None, webhook_host: str | None) -> Starlette:
    transactions: dict[str, Transaction] = {}
    by_code: dict[str, Transaction] = {}
    ids = itertools.count(4_000_000_001)
    deliveries: set[asyncio.Task[None]] = set()  # held, so a pending delivery is not collected

    def authorized(request: Request) -> bool:
        presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(presented.encode(), secret_key.encode())

    async def deliver(event: str, tx: Transaction) -> None:
        if not webhook_url:
            return
        body = json.dumps({"event": event, "data": tx.data()}).encode()
        headers = {
            "content-type": "application/json",
            "x-paystack-signature": sign(secret_key, body),
        }
        if webhook_host:
            headers["host"] = webhook_host
        async with httpx.AsyncClient(timeout=10) as client:
            for attempt in range(5):
                try:
                    if (
                        await client.post(webhook_url, content=body, headers=headers)
                    ).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5 * 2**attempt)

    async def initialize(request: Request) -> Response:
        if not authorized(request):
            return _fail(401, "Invalid key")
        try:
            body = await request.json()
        except ValueError:
            return _fail(400, "Invalid JSON body")
        email = body.get("email") if isinstance(body, dict) else None
        if not isinstance(email, str) or "@" not in email:
            return _fail(400, "Invalid Email Address Passed")
        raw_amount = body.get("amount")
        if isinstance(raw_amount, str) and raw_amount.isdigit():
            raw_amount = int(raw_amount)
        if not isinstance(raw_amount, int) or isinstance(raw_amount, bool) or raw_amount < 100:
            return _fail(400, "Invalid Amount Sent")
        reference = str(body.get("reference") or secrets.token_hex(8))
        if reference in transactions:
            return _fail(400, "Duplicate Transaction Reference")
        code = secrets.token_hex(8)
        tx = Transaction(
            id=next(ids),
            reference=reference,
            access_code=code,
            email=email,
            amount=raw_amount,
            currency=str(body.get("currency") or "NGN"),
            callback_url=body.get("callback_url"),
            metadata=body.get("metadata", ""),
        )
        transactions[reference] = by_code[code] = tx
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "status": True,
                "message": "Authorization URL created",
                "data": {
                    "authorization_url": f"{base}/checkout/{code}",
                    "access_code": code,
                    "reference": reference,
                },
            }
        )

    async def verify(request: Request) -> Response:
        if not authorized(request):
            return _fail(401, "Invalid key")
        tx = transactions.get(request.path_params["reference"])
        if tx is None:
            return _fail(400, "Transaction reference not found")
        return JSONResponse(
            {"status": True, "message": "Verification successful", "data": tx.data()}
        )

    async def checkout(request: Request) -> Response:
        tx = by_code.get(request.path_params["code"])
        if tx is None:
            return HTMLResponse("<h1>Unknown checkout</h1>", status_code=404)
        if request.method == "GET":
            amount = f"{tx.currency} {tx.amount // 100:,}.{tx.amount % 100:02d}"
            return HTMLResponse(
                "<!doctype html><title>Paystack stand-in</title>"
                f"<h1>Pay {html.escape(amount)}</h1><p>{html.escape(tx.email)}</p>"
                '<form method="post"><button name="outcome" value="success">Pay</button>'
                '<button name="outcome" value="failed">Decline</button></form>'
            )
        form = parse_qs((await request.body()).decode(errors="replace"))
        if tx.status == "abandoned":
            tx.status = "success" if form.get("outcome") == ["success"] else "failed"
            tx.paid_at = _now() if tx.status == "success" else None
            if tx.status == "success":
                task = asyncio.get_running_loop().create_task(deliver("charge.success", tx))
                deliveries.add(task)
                task.add_done_callback(deliveries.discard)
        if tx.callback_url:
            return RedirectResponse(f"{tx.callback_url}?reference={tx.reference}", status_code=303)
        return HTMLResponse(f"<h1>Payment {html.escape(tx.status)}</h1>")

    async def control(request: Request) -> Response:
        """Test hook: set what verify answers for a transaction."""
        if not authorized(request):
            return _fail(401, "Invalid key")
        tx = transactions.get(request.path_params["reference"])
        if tx is None:
            return _fail(404, "Transaction reference not found")
        body = await request.json()
        tx.status = str(body.get("status", tx.status))
        if isinstance(body.get("amount"), int):
            tx.amount = body["amount"]
        if isinstance(body.get("currency"), str):
            tx.currency = body["currency"]
        tx.paid_at = _now() if tx.status == "success" else None
        if body.get("send_webhook") and tx.status == "success":
            await deliver("charge.success", tx)
        return JSONResponse({"status": True, "message": "updated", "data": tx.data()})

    async def refund(request: Request) -> Response:
        if not authorized(request):
            return _fail(401, "Invalid key")
        try:
            body = await request.json()
        except ValueError:
            return _fail(400, "Invalid JSON body")
        key = str(body.get("transaction", "")) if isinstance(body, dict) else ""
        tx = transactions.get(key) or next(
            (t for t in transactions.values() if str(t.id) == key), None
        )
        if tx is None:
            return _fail(404, "Transaction not found")
        if tx.status == "reversed" or tx.refunded >= tx.amount:
            return _fail(400, "Transaction has been fully reversed")
        if tx.status != "success":
            return _fail(400, "Cannot refund a transaction that was not successful")
        raw = body.get("amount", tx.amount - tx.refunded)
        amount = int(raw) if isinstance(raw, int | str) and str(raw).isdigit() else -1
        if not 0 < amount <= tx.amount - tx.refunded:
            return _fail(400, "Refund amount cannot be greater than transaction amount")
        tx.refunded += amount
        if tx.refunded >= tx.amount:
            tx.status = "reversed"
        now = _now()
        made = {
            "transaction": tx.data(),
            "integration": 100001,
            "deducted_amount": 0,
            "channel": None,
            "merchant_note": f"Refund for transaction {tx.reference}",
            "customer_note": f"Refund for transaction {tx.reference}",
            "status": "pending",
            "refunded_by": "standin@example.com",
            "expected_at": now,
            "currency": tx.currency,
            "domain": "test",
            "amount": amount,
            "fully_deducted": False,
            "id": next(ids),
            "createdAt": now,
            "updatedAt": now,
        }
        tx.refunds.append(made)
        return JSONResponse(
            {"status": True, "message": "Refund has been queued for processing", "data": made}
        )

    async def refunds_of(request: Request) -> Response:
        """Test hook: the refunds made of a transaction."""
        if not authorized(request):
            return _fail(401, "Invalid key")
        tx = transactions.get(request.path_params["reference"])
        if tx is None:
            return _fail(404, "Transaction reference not found")
        return JSONResponse({"status": True, "message": "Refunds retrieved", "data": tx.refunds})

    return Starlette(
        routes=[
            Route("/transaction/initialize", initialize, methods=["POST"]),
            Route("/transaction/verify/{reference}", verify, methods=["GET"]),
            Route("/refund", refund, methods=["POST"]),
            Route("/checkout/{code}", checkout, methods=["GET", "POST"]),
            Route("/_standin/transactions/{reference}", control, methods=["POST"]),
            Route("/_standin/transactions/{reference}/refunds", refunds_of, methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-host")
    args = parser.parse_args()
    secret_key = os.environ.get(SECRET_ENV)
    if not secret_key:
        raise SystemExit(f"{SECRET_ENV} must be set")
    app = create_app(secret_key, args.webhook_url, args.webhook_host)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
