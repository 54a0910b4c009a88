"""The provisioner's read model of accounts, kept from identity's and billing's events."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.consumers import Consumer, consumer
from shardz_common.events import AccountReactivated, AccountSuspended, UserCreated, UserDeleted
from shardz_provisioner.db.tables import Account


async def _set_status(session: AsyncSession, user_id: object, status: str) -> None:
    stmt = insert(Account).values(user_id=user_id, status=status)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Account.user_id],
            set_={"status": status, "updated_at": func.now()},
            where=Account.status != "deleted",
        )
    )


@consumer("provisioner.user-created", UserCreated)
async def on_user_created(event: UserCreated, session: AsyncSession) -> None:
    await session.execute(insert(Account).values(user_id=event.user_id).on_conflict_do_nothing())


@consumer("provisioner.user-deleted", UserDeleted)
async def on_user_deleted(event: UserDeleted, session: AsyncSession) -> None:
    await _set_status(session, event.user_id, "deleted")


@consumer("provisioner.account-suspended", AccountSuspended)
async def on_account_suspended(event: AccountSuspended, session: AsyncSession) -> None:
    await _set_status(session, event.user_id, "suspended")


@consumer("provisioner.account-reactivated", AccountReactivated)
async def on_account_reactivated(event: AccountReactivated, session: AsyncSession) -> None:
    await _set_status(session, event.user_id, "active")


CONSUMERS: list[Consumer[Any]] = [
    on_user_created,
    on_user_deleted,
    on_account_suspended,
    on_account_reactivated,
]
