"""Reconciliation: the provisioner's own list of databases is the truth; any subscription an
event did not reach (lost, dead-lettered, or sent before billing existed) is fixed from it.

- a database billing never heard of is billed from its real creation time;
- a plan change billing missed switches the subscription at the real change time;
- a deletion billing missed closes the subscription at the real deletion time.

Never twice: every fix goes through the same idempotent functions the events use, under the
resource's lock (`subscriptions.lock_resource`), so a late event, a second replica or the
next pass finds the fact already applied. The worker runs one pass per interval across its
replicas (`job_runs`); each page is its own short transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_billing.config import BillingSettings
from shardz_billing.db.tables import Subscription
from shardz_billing.services import subscriptions

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class _Listed:
    """One database as the provisioner lists it."""

    id: str
    user_id: uuid.UUID
    plan: str
    created_at: datetime
    plan_since: datetime
    deleted_at: datetime | None

    @classmethod
    def parse(cls, item: dict[str, Any]) -> _Listed:
        created = datetime.fromisoformat(item["created_at"])
        since = item.get("plan_since")
        deleted = item.get("deleted_at")
        return cls(
            id=str(item["id"]),
            user_id=uuid.UUID(item["user_id"]),
            plan=item["plan"],
            created_at=created,
            plan_since=datetime.fromisoformat(since) if since else created,
            deleted_at=datetime.fromisoformat(deleted) if deleted else None,
        )


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


async def _fix(s: AsyncSession, db: _Listed, known: list[Subscription]) -> bool:
    if not known:
        opened = await subscriptions.open_subscription(
            s,
            user_id=db.user_id,
            resource_type="database",
            resource_id=db.id,
            plan_id=db.plan,
            started_at=db.created_at,
            cancelled_at=db.deleted_at,
            only_if_new_resource=True,
        )
        if opened is not None:
            log.warning("subscription opened by reconciliation", database_id=db.id)
        return opened is not None
    fixed = False
    active = next((k for k in known if k.status == "active"), None)
    if active is not None and active.plan != db.plan and active.started_at < db.plan_since:
        fixed = await subscriptions.change_plan(
            s,
            user_id=db.user_id,
            resource_type="database",
            resource_id=db.id,
            plan_id=db.plan,
            at=db.plan_since,
        )
        if fixed:
            log.warning("plan change applied by reconciliation", database_id=db.id, plan=db.plan)
    gone = db.deleted_at
    if gone and active and await subscriptions.cancel_subscription(s, "database", db.id, gone):
        log.warning("subscription closed by reconciliation", database_id=db.id)
        fixed = True
    return fixed


async def _fix_page(s: AsyncSession, items: list[dict[str, Any]]) -> int:
    listed = [_Listed.parse(i) for i in items]
    rows = (
        await s.execute(
            select(Subscription).where(
                Subscription.resource_type == "database",
                Subscription.resource_id.in_([d.id for d in listed]),
            )
        )
    ).scalars()
    known: dict[str, list[Subscription]] = {}
    for sub in rows:
        known.setdefault(sub.resource_id, []).append(sub)
    fixed = 0
    for db in listed:
        # a cheap look first; the fix itself re-reads under the resource's lock
        if known.get(db.id) and not _differs(db, known[db.id]):
            continue
        await subscriptions.lock_resource(s, "database", db.id)
        current = list(
            (
                await s.execute(
                    select(Subscription)
                    .where(
                        Subscription.resource_type == "database",
                        Subscription.resource_id == db.id,
                    )
                    .execution_options(populate_existing=True)
                )
            ).scalars()
        )
        fixed += await _fix(s, db, current)
    return fixed


def _differs(db: _Listed, known: list[Subscription]) -> bool:
    active = [k for k in known if k.status == "active"]
    if not active:
        return False  # closed (or never more than that): nothing the listing can add
    return db.deleted_at is not None or active[0].plan != db.plan


async def reconcile_databases(
    sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient, settings: BillingSettings
) -> int:
    """One pass over every database the provisioner lists; returns the fixes made."""
    if not settings.secrets.provisioner_internal_secret:
        log.warning("reconciliation off: PROVISIONER_INTERNAL_SECRET is unset")
        return 0
    started = datetime.now(UTC)
    fixed = 0
    cursor: str | None = None
    while True:
        page = await _page(http, settings, cursor)
        async with sessions() as s, s.begin():
            fixed += await _fix_page(s, page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    log.info("reconciliation pass", fixed=fixed, started=started.isoformat())
    return fixed
