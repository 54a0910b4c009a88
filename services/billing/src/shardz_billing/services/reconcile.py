"""Reconciliation: the provisioner's own list of databases is the truth; any subscription an
event did not reach (lost, dead-lettered, or sent before billing existed) is fixed from it.
A missing database is billed from its real creation time, and never twice: a resource that
has any subscription already is left to the events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import structlog
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_billing.config import BillingSettings
from shardz_billing.db.tables import Subscription
from shardz_billing.services import subscriptions

log = structlog.get_logger(__name__)
RECONCILE_LOCK = 7_410_105


async def _page(
    http: httpx.AsyncClient, settings: BillingSettings, cursor: str | None
) -> dict[str, Any]:
    params: dict[str, str | int] = {"limit": settings.reconcile_page_size}
    if cursor:
        params["cursor"] = cursor
    resp = await http.get(
        f"{settings.platform.provisioner_url}/internal/databases",
        params=params,
        headers={"Authorization": f"Bearer {settings.secrets.provisioner_internal_secret}"},
        timeout=httpx.Timeout(15.0, connect=5.0),
    )
    resp.raise_for_status()
    body: dict[str, Any] = resp.json()
    return body


async def _fix_page(s: AsyncSession, items: list[dict[str, Any]]) -> int:
    ids = [str(i["id"]) for i in items]
    rows = await s.execute(
        select(Subscription.resource_id, Subscription.status).where(
            Subscription.resource_type == "database", Subscription.resource_id.in_(ids)
        )
    )
    known: dict[str, set[str]] = {}
    for resource_id, status in rows.all():
        known.setdefault(resource_id, set()).add(status)
    fixed = 0
    for item in items:
        rid = str(item["id"])
        deleted_at = datetime.fromisoformat(item["deleted_at"]) if item.get("deleted_at") else None
        if rid not in known:
            opened = await subscriptions.open_subscription(
                s,
                user_id=uuid.UUID(item["user_id"]),
                resource_type="database",
                resource_id=rid,
                plan_id=item["plan"],
                started_at=datetime.fromisoformat(item["created_at"]),
                cancelled_at=deleted_at,
                only_if_new_resource=True,
            )
            if opened is not None:
                log.warning("subscription opened by reconciliation", database_id=rid)
                fixed += 1
        elif deleted_at is not None and "active" in known[rid]:
            await subscriptions.cancel_subscription(s, "database", rid, deleted_at)
            log.warning("subscription closed by reconciliation", database_id=rid)
            fixed += 1
    return fixed


async def reconcile_databases(
    sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient, settings: BillingSettings
) -> int:
    """One pass over every database the provisioner lists; one replica at a time."""
    if not settings.secrets.provisioner_internal_secret:
        log.warning("reconciliation off: PROVISIONER_INTERNAL_SECRET is unset")
        return 0
    fixed = 0
    async with sessions() as s, s.begin():
        locked = await s.execute(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": RECONCILE_LOCK}
        )
        if not locked.scalar_one():
            return 0
        cursor: str | None = None
        while True:
            page = await _page(http, settings, cursor)
            fixed += await _fix_page(s, page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
    return fixed
