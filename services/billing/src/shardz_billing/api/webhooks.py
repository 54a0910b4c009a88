"""Paystack's webhook: verified, stored once, answered at once; settled afterwards."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, BackgroundTasks, Header, Request
from sqlalchemy.dialects.postgresql import insert

from shardz_billing.api.schemas import WebhookAck
from shardz_billing.db.tables import PaystackEvent
from shardz_billing.deps import PaystackDep, SessionsDep
from shardz_billing.domain.errors import PayloadTooLarge
from shardz_billing.services.payments import settle_pending
from shardz_billing.services.paystack import PaystackClient, signature_valid
from shardz_common.errors import Unauthenticated, ValidationFailed
from shardz_common.openapi import problems

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/billing", tags=["billing"])
MAX_BODY = 64 * 1024


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise PayloadTooLarge(f"a webhook body is at most {MAX_BODY} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise PayloadTooLarge(f"a webhook body is at most {MAX_BODY} bytes")
    return bytes(body)


def _parse(body: bytes) -> tuple[str, str | None, dict[str, Any]]:
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        raise ValidationFailed("the body is not a Paystack event", field="event")
    data = payload.get("data")
    reference = data.get("reference") if isinstance(data, dict) else None
    return payload["event"][:80], str(reference)[:100] if reference else None, payload


async def _settle_quietly(sessions: Any, paystack: PaystackClient) -> None:
    try:
        await settle_pending(sessions, paystack)
    except Exception as exc:  # the worker's sweep settles whatever is left
        log.warning("settlement deferred to the worker", error=type(exc).__name__)


@router.post("/webhooks/paystack", response_model=WebhookAck, responses=problems(401))
async def paystack_webhook(
    request: Request,
    background: BackgroundTasks,
    sessions: SessionsDep,
    paystack: PaystackDep,
    x_paystack_signature: Annotated[str | None, Header()] = None,
) -> WebhookAck:
    body = await _body(request)
    if not signature_valid(paystack.secret_key, body, x_paystack_signature):
        raise Unauthenticated("invalid webhook signature")
    event, reference, payload = _parse(body)
    async with sessions() as s, s.begin():
        await s.execute(
            insert(PaystackEvent)
            .values(
                body_sha256=hashlib.sha256(body).hexdigest(),
                event=event,
                reference=reference,
                payload=payload,
            )
            .on_conflict_do_nothing(index_elements=[PaystackEvent.body_sha256])
        )
    background.add_task(_settle_quietly, sessions, paystack)
    return WebhookAck()
