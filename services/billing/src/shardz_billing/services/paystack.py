"""A small Paystack client: initialize, verify and refund a transaction, check a webhook
signature.

Only the base URL and the secret key come from settings, so a local server that speaks
Paystack's API (tests, `make dev`) is indistinguishable from the real one. The key never
reaches a log line: errors carry the status and Paystack's message only."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from shardz_common.errors import Unavailable

log = structlog.get_logger(__name__)

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
RETRIES = 3


class PaystackUnavailable(Unavailable):
    """Paystack could not be reached or answered 5xx; nothing was settled."""


class PaystackRefused(Unavailable):
    """Paystack answered, but refused the request (a 4xx other than "not found")."""


def signature_valid(secret_key: str | None, body: bytes, signature: str | None) -> bool:
    """`x-paystack-signature` is the hex HMAC-SHA512 of the raw body under the secret key."""
    if not secret_key or not signature:
        return False
    expected = hmac.new(secret_key.encode(), body, hashlib.sha512).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())


def sign(secret_key: str, body: bytes) -> str:
    return hmac.new(secret_key.encode(), body, hashlib.sha512).hexdigest()


@dataclass(frozen=True)
class Transaction:
    """What `GET /transaction/verify/:reference` says about a transaction."""

    reference: str
    status: str  # success | failed | abandoned | ongoing | pending | reversed ...
    amount: int
    currency: str


@dataclass(frozen=True)
class Refund:
    """What `POST /refund` answered: Paystack's refund id and its (usually pending) status."""

    id: str | None
    status: str
    amount: int


@dataclass(frozen=True)
class Checkout:
    authorization_url: str
    access_code: str | None
    reference: str


class PaystackClient:
    def __init__(self, base_url: str, secret_key: str | None, http: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret_key = secret_key
        self.http = http

    @property
    def enabled(self) -> bool:
        return bool(self.secret_key)

    async def _call(self, method: str, path: str, json: dict[str, Any] | None = None) -> Any:
        if not self.secret_key:
            raise Unavailable("payments are not configured (BILLING_PAYSTACK_SECRET_KEY is unset)")
        headers = {"Authorization": f"Bearer {self.secret_key}"}
        delay = 0.2
        for attempt in range(1, RETRIES + 1):
            try:
                resp = await self.http.request(
                    method, self.base_url + path, json=json, headers=headers, timeout=TIMEOUT
                )
            except httpx.HTTPError as exc:
                log.warning(
                    "paystack unreachable", path=path, attempt=attempt, error=type(exc).__name__
                )
                resp = None
            if resp is not None and resp.status_code < 500:
                return resp
            if resp is not None:
                log.warning("paystack 5xx", path=path, attempt=attempt, status=resp.status_code)
            if attempt < RETRIES:
                await asyncio.sleep(delay)
                delay *= 2
        raise PaystackUnavailable("the payment provider is unavailable; try again shortly")

    async def initialize(
        self,
        *,
        email: str,
        amount_minor: int,
        currency: str,
        reference: str,
        callback_url: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Checkout:
        body: dict[str, Any] = {
            "email": email,
            "amount": amount_minor,  # Paystack takes the subunit (kobo)
            "currency": currency,
            "reference": reference,
        }
        if callback_url:
            body["callback_url"] = callback_url
        if metadata:
            body["metadata"] = metadata
        resp = await self._call("POST", "/transaction/initialize", body)
        payload = _json(resp)
        if resp.status_code != 200 or not payload.get("status"):
            log.warning(
                "paystack refused initialize",
                status=resp.status_code,
                message=payload.get("message"),
            )
            raise PaystackRefused("the payment provider refused the payment")
        data = payload["data"]
        return Checkout(
            authorization_url=str(data["authorization_url"]),
            access_code=data.get("access_code"),
            reference=str(data.get("reference", reference)),
        )

    async def verify(self, reference: str) -> Transaction | None:
        """The transaction as Paystack knows it; None when Paystack does not know it."""
        resp = await self._call("GET", f"/transaction/verify/{quote(reference, safe='')}")
        payload = _json(resp)
        if resp.status_code in (400, 404) and not payload.get("status"):
            return None
        if resp.status_code != 200 or not payload.get("status"):
            raise PaystackRefused("the payment provider refused the verification")
        data = payload.get("data") or {}
        amount = data.get("amount")
        return Transaction(
            reference=str(data.get("reference", "")),
            status=str(data.get("status", "")),
            amount=amount if isinstance(amount, int) and not isinstance(amount, bool) else -1,
            currency=str(data.get("currency", "")),
        )

    async def refund(self, reference: str, amount_minor: int) -> Refund:
        """Refund a transaction (`POST /refund`). A transaction already fully refunded (by an
        earlier call whose answer was lost) counts as refunded, not as an error."""
        resp = await self._call(
            "POST", "/refund", {"transaction": reference, "amount": amount_minor}
        )
        payload = _json(resp)
        message = str(payload.get("message", ""))
        if resp.status_code == 400 and "fully reversed" in message.lower():
            return Refund(id=None, status="already_refunded", amount=amount_minor)
        if resp.status_code != 200 or not payload.get("status"):
            log.warning("paystack refused refund", status=resp.status_code, message=message)
            raise PaystackRefused("the payment provider refused the refund")
        data = payload.get("data") or {}
        return Refund(
            id=str(data["id"]) if data.get("id") is not None else None,
            status=str(data.get("status", "")),
            amount=int(data.get("amount", amount_minor)),
        )


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
