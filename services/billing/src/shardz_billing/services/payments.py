"""Paying an invoice through Paystack, and settling it from a verified webhook.

Starting a payment records the attempt (its reference) before Paystack is called, so a
crash in between leaves a trace the settlement can still match. Settlement never trusts the
webhook's own claims: it asks Paystack (`verify`) and settles only a `success` for exactly
the invoice's amount and currency."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import structlog
from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_billing.api.schemas import PaymentStarted
from shardz_billing.config import BillingSettings
from shardz_billing.db.tables import Account, Invoice, Payment, PaystackEvent
from shardz_billing.services.events import emit
from shardz_billing.services.paystack import PaystackClient
from shardz_common.auth import Principal
from shardz_common.errors import Conflict, NotFound, ProblemError, Unavailable
from shardz_common.events import AccountReactivated, InvoicePaid

log = structlog.get_logger(__name__)


def reference_for(invoice_id: uuid.UUID, attempt: int) -> str:
    """Unique per attempt and derived from it, so a retried record finds the same one."""
    return f"shz-{invoice_id.hex}-{attempt}"


async def start(
    sessions: async_sessionmaker[AsyncSession],
    paystack: PaystackClient,
    settings: BillingSettings,
    user: Principal,
    invoice_id: uuid.UUID,
) -> PaymentStarted:
    if not paystack.enabled:
        raise Unavailable("payments are off: the operator has not set BILLING_PAYSTACK_SECRET_KEY")
    # 1. intent
    async with sessions() as s, s.begin():
        invoice = await s.get(Invoice, invoice_id, with_for_update=True)
        if invoice is None or invoice.user_id != user.id:
            raise NotFound("no such invoice")
        if invoice.status in ("paid", "void"):
            raise Conflict(f"the invoice is {invoice.status}")
        account = await s.get(Account, user.id)
        if account is None or not account.email:
            raise Unavailable("your account details have not reached billing yet; retry shortly")
        email = account.email
        attempt = (
            await s.execute(
                select(func.coalesce(func.max(Payment.attempt), 0)).where(
                    Payment.invoice_id == invoice.id
                )
            )
        ).scalar_one() + 1
        reference = reference_for(invoice.id, attempt)
        amount, currency = invoice.amount_minor, invoice.currency
        s.add(
            Payment(
                reference=reference,
                invoice_id=invoice.id,
                attempt=attempt,
                amount_minor=amount,
                currency=currency,
                status="initializing",
            )
        )
    # 2. the outside effect
    try:
        checkout = await paystack.initialize(
            email=email,
            amount_minor=amount,
            currency=currency,
            reference=reference,
            callback_url=settings.paystack_callback_url,
            metadata={"invoice_id": str(invoice_id)},
        )
    except ProblemError:
        await _set_status(sessions, reference, "failed")
        raise
    # 3. its result
    async with sessions() as s, s.begin():
        await s.execute(
            update(Payment)
            .where(Payment.reference == reference)
            .values(
                status="pending",
                authorization_url=checkout.authorization_url,
                access_code=checkout.access_code,
                updated_at=func.now(),
            )
        )
    return PaymentStarted(
        authorization_url=checkout.authorization_url,
        reference=reference,
        access_code=checkout.access_code,
    )


async def _set_status(
    sessions: async_sessionmaker[AsyncSession], reference: str, status: str
) -> None:
    async with sessions() as s, s.begin():
        await s.execute(
            update(Payment)
            .where(Payment.reference == reference)
            .values(status=status, updated_at=func.now())
        )


async def settle_pending(
    sessions: async_sessionmaker[AsyncSession], paystack: PaystackClient, limit: int = 100
) -> int:
    """Settle stored webhook events, one transaction each; safe to run from several
    processes (rows are claimed with SKIP LOCKED). An unreachable Paystack leaves the event
    for the next pass."""
    handled = 0
    for _ in range(limit):
        async with sessions() as s, s.begin():
            event = (
                await s.execute(
                    select(PaystackEvent)
                    .where(PaystackEvent.processed_at.is_(None))
                    .order_by(PaystackEvent.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).scalar_one_or_none()
            if event is None:
                return handled
            outcome = await _settle(s, paystack, event)
            event.processed_at = datetime.now(UTC)
            event.outcome = outcome
            log.info("paystack event handled", reference=event.reference, outcome=outcome)
        handled += 1
    return handled


async def _settle(s: AsyncSession, paystack: PaystackClient, event: PaystackEvent) -> str:
    if event.event != "charge.success" or not event.reference:
        return "ignored"
    payment = await s.get(Payment, event.reference, with_for_update=True)
    if payment is None:
        return "unknown_reference"
    tx = await paystack.verify(payment.reference)
    if tx is None:
        return "unknown_at_paystack"
    invoice = await s.get(Invoice, payment.invoice_id, with_for_update=True)
    assert invoice is not None
    if tx.status != "success":
        if tx.status in ("failed", "abandoned", "reversed"):
            payment.status = "failed"
        return f"not_successful:{tx.status}"[:80]
    if (
        tx.reference != payment.reference
        or tx.amount != invoice.amount_minor
        or tx.currency != invoice.currency
        or payment.amount_minor != invoice.amount_minor
    ):
        log.warning("paystack amount mismatch", reference=payment.reference)
        return "amount_mismatch"
    payment.updated_at = datetime.now(UTC)
    if invoice.status not in ("open", "overdue"):
        if payment.status in ("succeeded", "needs_refund", "refunded"):
            return f"invoice_{invoice.status}"  # this payment's own event, again
        # Charged, but the invoice was already settled (two attempts both paid) or voided:
        # the money goes back. Recorded here, refunded by `refund_pending`.
        payment.status = "needs_refund"
        log.warning("charge of a settled invoice; refunding", reference=payment.reference)
        return "needs_refund"
    payment.status = "succeeded"
    invoice.status = "paid"
    invoice.paid_at = datetime.now(UTC)
    emit(s, InvoicePaid(invoice_id=invoice.id, user_id=invoice.user_id), invoice.id)
    await reactivate_if_clear(s, invoice.user_id)
    return "settled"


async def refund_pending(
    sessions: async_sessionmaker[AsyncSession], paystack: PaystackClient, limit: int = 100
) -> int:
    """Refund, through Paystack, each charge recorded as `needs_refund`, one transaction each
    (claimed with SKIP LOCKED, so replicas share the work). A crash after Paystack took the
    refund leaves the row as it was; the next attempt finds the transaction already reversed
    and records it as refunded, so a charge is never refunded twice."""
    done = 0
    for _ in range(limit):
        async with sessions() as s, s.begin():
            payment = (
                await s.execute(
                    select(Payment)
                    .where(Payment.status == "needs_refund")
                    .order_by(Payment.reference)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).scalar_one_or_none()
            if payment is None:
                return done
            refund = await paystack.refund(payment.reference, payment.amount_minor)
            payment.status = "refunded"
            payment.refund_id = refund.id
            payment.updated_at = datetime.now(UTC)
            log.info("charge refunded", reference=payment.reference, refund=refund.status)
        done += 1
    return done


async def reactivate_if_clear(s: AsyncSession, user_id: uuid.UUID) -> bool:
    """A suspended account with nothing overdue left is active again."""
    overdue = exists().where(Invoice.user_id == user_id, Invoice.status == "overdue")
    row = (
        await s.execute(
            update(Account)
            .where(Account.user_id == user_id, Account.status == "suspended", ~overdue)
            .values(status="active", status_at=func.now())
            .returning(Account.user_id)
        )
    ).first()
    if row is None:
        return False
    emit(s, AccountReactivated(user_id=user_id, reason="paid"), user_id)
    return True
