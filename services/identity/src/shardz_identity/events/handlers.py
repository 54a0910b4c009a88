"""Identity reflects billing's account state so `GET /v1/users/me` tells the truth."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.consumers import Consumer, consumer, event_time
from shardz_common.events import AccountReactivated, AccountSuspended
from shardz_identity.services.accounts import set_status


@consumer("identity.account-suspended", AccountSuspended)
async def on_account_suspended(event: AccountSuspended, session: AsyncSession) -> None:
    await set_status(session, event.user_id, "suspended", event_time())


@consumer("identity.account-reactivated", AccountReactivated)
async def on_account_reactivated(event: AccountReactivated, session: AsyncSession) -> None:
    await set_status(session, event.user_id, "active", event_time())


CONSUMERS: list[Consumer[Any]] = [on_account_suspended, on_account_reactivated]
