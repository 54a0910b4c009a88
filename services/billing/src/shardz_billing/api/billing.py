from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from fastapi import APIRouter

from shardz_billing.api.schemas import (
    InvoiceList,
    InvoiceOut,
    PaymentStarted,
    PlanList,
    PlanOut,
    SubscriptionList,
)
from shardz_billing.deps import PaystackDep, SessionsDep, SettingsDep
from shardz_billing.services import payments, subscriptions, views
from shardz_common.auth import CurrentUser
from shardz_common.db import ReadSessionDep, SessionDep
from shardz_common.openapi import problems
from shardz_common.plans import all_plans

router = APIRouter(prefix="/v1/billing", tags=["billing"])


@router.get("/plans", response_model=PlanList)
async def list_plans() -> PlanList:
    return PlanList(items=[PlanOut(**p.model_dump()) for p in all_plans()])


@router.get("/subscriptions", response_model=SubscriptionList)
async def list_subscriptions(session: SessionDep, user: CurrentUser) -> SubscriptionList:
    await subscriptions.ensure_storage_subscription(session, user.id, datetime.now(UTC))
    await session.flush()
    return SubscriptionList(items=await views.subscriptions(session, user.id))


@router.get("/invoices", response_model=InvoiceList)
async def list_invoices(session: ReadSessionDep, user: CurrentUser) -> InvoiceList:
    return InvoiceList(items=await views.invoices(session, user.id))


@router.get("/invoices/{invoice_id}", response_model=InvoiceOut)
async def get_invoice(invoice_id: UUID, session: ReadSessionDep, user: CurrentUser) -> InvoiceOut:
    return await views.invoice(session, user.id, invoice_id)


@router.post("/invoices/{invoice_id}/pay", response_model=PaymentStarted, responses=problems(409))
async def pay_invoice(
    invoice_id: UUID,
    user: CurrentUser,
    sessions: SessionsDep,
    paystack: PaystackDep,
    settings: SettingsDep,
) -> PaymentStarted:
    return await payments.start(sessions, paystack, settings, user, invoice_id)
