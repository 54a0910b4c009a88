"""Events that end terminal sessions. The worker turns each into a NOTIFY inside the
consumer's transaction (sent only if it commits); every API process LISTENs and closes the
sessions it holds."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.consumers import Consumer, consumer
from shardz_common.events import AccountSuspended, ApiKeyRevoked, DatabaseDeleted, DatabaseSuspended
from shardz_terminal.services.registry import CLOSE_CHANNEL, close_notice


async def _notify(session: AsyncSession, field: str, value: UUID, reason: str) -> None:
    await session.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": CLOSE_CHANNEL, "payload": close_notice(field, value, reason)},
    )


@consumer("terminal.db-deleted", DatabaseDeleted)
async def on_db_deleted(event: DatabaseDeleted, session: AsyncSession) -> None:
    await _notify(session, "database_id", event.database_id, "the database was deleted")


@consumer("terminal.db-suspended", DatabaseSuspended)
async def on_db_suspended(event: DatabaseSuspended, session: AsyncSession) -> None:
    await _notify(session, "database_id", event.database_id, "the database is suspended")


@consumer("terminal.account-suspended", AccountSuspended)
async def on_account_suspended(event: AccountSuspended, session: AsyncSession) -> None:
    await _notify(session, "user_id", event.user_id, "the account is suspended")


@consumer("terminal.apikey-revoked", ApiKeyRevoked)
async def on_apikey_revoked(event: ApiKeyRevoked, session: AsyncSession) -> None:
    await _notify(session, "key_id", event.key_id, "the API key was revoked")


CONSUMERS: list[Consumer[Any]] = [
    on_db_deleted,
    on_db_suspended,
    on_account_suspended,
    on_apikey_revoked,
]
