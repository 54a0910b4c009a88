"""The event catalogue of CONTRACT section 9, version 1 of each payload."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from shardz_common.events.base import Event, register


@register
class UserCreated(Event):
    event_type = "user.created"
    user_id: UUID
    email: str


@register
class UserDeleted(Event):
    event_type = "user.deleted"
    user_id: UUID


@register
class SigningKeyRevoked(Event):
    """Every service stops accepting tokens signed with `kid` (CONTRACT section 9)."""

    event_type = "signing_key.revoked"
    kid: str


@register
class ApiKeyCreated(Event):
    event_type = "apikey.created"
    key_id: UUID
    user_id: UUID


@register
class ApiKeyRevoked(Event):
    event_type = "apikey.revoked"
    key_id: UUID
    user_id: UUID


@register
class DatabaseProvisioned(Event):
    event_type = "db.provisioned"
    database_id: UUID
    user_id: UUID
    engine: str
    cluster: str
    plan: str = "free"


@register
class DatabaseDeleted(Event):
    event_type = "db.deleted"
    database_id: UUID
    user_id: UUID


@register
class DatabaseMoved(Event):
    """A database now lives on another tenant cluster (POST /v1/databases/{id}/move): its
    host and port changed, its credentials did not."""

    event_type = "db.moved"
    database_id: UUID
    user_id: UUID
    from_cluster: str
    to_cluster: str


@register
class DatabasePlanChanged(Event):
    """A database moved to another plan (PATCH /v1/databases/{id}); its new limits apply."""

    event_type = "db.plan_changed"
    database_id: UUID
    user_id: UUID
    plan: str
    previous_plan: str
    changed_at: datetime


@register
class DatabaseSuspended(Event):
    event_type = "db.suspended"
    database_id: UUID
    user_id: UUID


@register
class DatabaseResumed(Event):
    event_type = "db.resumed"
    database_id: UUID
    user_id: UUID


@register
class DatabaseUsageReported(Event):
    event_type = "db.usage.reported"
    database_id: UUID
    user_id: UUID
    size_bytes: int
    measured_at: datetime


@register
class StorageUsageReported(Event):
    event_type = "storage.usage.reported"
    user_id: UUID
    used_bytes: int
    object_count: int
    measured_at: datetime
    # the space's storage plan (billing subscribes the space to it)
    plan: str = "storage-free"


@register
class StoragePlanChanged(Event):
    """A storage space moved to another plan (PATCH /v1/storage)."""

    event_type = "storage.plan_changed"
    user_id: UUID
    plan: str
    previous_plan: str
    changed_at: datetime


@register
class SubscriptionCreated(Event):
    event_type = "subscription.created"
    subscription_id: UUID
    user_id: UUID
    resource_type: str
    resource_id: str


@register
class SubscriptionCancelled(Event):
    event_type = "subscription.cancelled"
    subscription_id: UUID
    user_id: UUID
    resource_type: str
    resource_id: str


@register
class InvoiceDue(Event):
    event_type = "invoice.due"
    invoice_id: UUID
    user_id: UUID
    amount_minor: int
    currency: str
    due_at: datetime


@register
class InvoicePaid(Event):
    event_type = "invoice.paid"
    invoice_id: UUID
    user_id: UUID


@register
class AccountSuspended(Event):
    event_type = "account.suspended"
    user_id: UUID
    reason: str


@register
class AccountReactivated(Event):
    event_type = "account.reactivated"
    user_id: UUID
    reason: str
