"""Events storage consumes: identity's user lifecycle and billing's account state."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.consumers import Consumer, consumer, event_time
from shardz_common.events import AccountReactivated, AccountSuspended, UserCreated, UserDeleted
from shardz_storage.config import StorageSettings
from shardz_storage.services import spaces


def consumers(settings: StorageSettings) -> list[Consumer[Any]]:
    @consumer("storage.user-created", UserCreated)
    async def on_user_created(event: UserCreated, session: AsyncSession) -> None:
        await spaces.ensure(session, settings, event.user_id)

    @consumer("storage.user-deleted", UserDeleted)
    async def on_user_deleted(event: UserDeleted, session: AsyncSession) -> None:
        # only intents here: the sweeper deletes the store objects outside this transaction
        await spaces.delete_all_for(session, settings, event.user_id)

    @consumer("storage.account-suspended", AccountSuspended)
    async def on_account_suspended(event: AccountSuspended, session: AsyncSession) -> None:
        await spaces.set_status(session, settings, event.user_id, "suspended", event_time())

    @consumer("storage.account-reactivated", AccountReactivated)
    async def on_account_reactivated(event: AccountReactivated, session: AsyncSession) -> None:
        await spaces.set_status(session, settings, event.user_id, "active", event_time())

    return [on_user_created, on_user_deleted, on_account_suspended, on_account_reactivated]
