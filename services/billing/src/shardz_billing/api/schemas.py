"""Request and response shapes of CONTRACT section 7."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class PlanOut(BaseModel):
    id: str
    resource_type: Literal["database", "storage"]
    name: str
    price_minor: int
    currency: str
    interval: Literal["month"]
    limits: dict[str, Any]


class PlanList(BaseModel):
    items: list[PlanOut]


class SubscriptionOut(BaseModel):
    id: UUID
    resource_type: str
    resource_id: str
    plan: str
    status: Literal["active", "cancelled"]
    current_period_start: datetime
    current_period_end: datetime
    started_at: datetime
    cancelled_at: datetime | None


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class InvoiceLineOut(BaseModel):
    subscription_id: UUID
    description: str
    period_start: datetime
    period_end: datetime
    amount_minor: int


class InvoiceOut(BaseModel):
    id: UUID
    status: Literal["open", "paid", "overdue", "void"]
    amount_minor: int
    currency: str
    period_start: datetime
    period_end: datetime
    issued_at: datetime
    due_at: datetime
    paid_at: datetime | None
    lines: list[InvoiceLineOut]


class InvoiceList(BaseModel):
    items: list[InvoiceOut]


class PaymentStarted(BaseModel):
    authorization_url: str
    reference: str
    access_code: str | None = None


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: date


class RunResult(BaseModel):
    invoices_created: int
    invoices_overdue: int
    accounts_suspended: int


class WebhookAck(BaseModel):
    status: Literal["ok"] = "ok"
