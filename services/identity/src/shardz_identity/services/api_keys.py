"""API keys: `shz_` + 256 random bits, shown once; only the SHA-256 is kept."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.auth import API_KEY_PREFIX, Principal
from shardz_common.errors import NotFound, PlanLimitReached
from shardz_common.events import ApiKeyCreated as ApiKeyCreatedEvent
from shardz_common.events import ApiKeyRevoked
from shardz_identity.db.tables import ApiKey, User
from shardz_identity.domain.models import ApiKeyCreated, ApiKeyOut, IntrospectOut
from shardz_identity.services.events import emit

LAST_USED_GRANULARITY = timedelta(seconds=60)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create(session: AsyncSession, user: Principal, name: str, cap: int) -> ApiKeyCreated:
    # The user's row lock makes count-then-insert atomic across concurrent requests.
    await session.execute(select(User.id).where(User.id == user.id).with_for_update())
    active = await session.scalar(
        select(func.count()).where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
    )
    if (active or 0) >= cap:
        raise PlanLimitReached(f"an account may hold {cap} active API keys; revoke one first")
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id=uuid.uuid4(), user_id=user.id, name=name, prefix=key[:12], secret_hash=digest(key)
    )
    session.add(row)
    await session.flush()
    await session.refresh(row, ["created_at"])
    emit(session, ApiKeyCreatedEvent(key_id=row.id, user_id=user.id), user.id)
    return ApiKeyCreated(
        id=row.id, name=row.name, prefix=row.prefix, key=key, created_at=row.created_at
    )


async def list_for(session: AsyncSession, user: Principal) -> list[ApiKeyOut]:
    rows = (
        await session.execute(
            select(ApiKey)
            .where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
            .order_by(ApiKey.created_at)
        )
    ).scalars()
    return [ApiKeyOut.model_validate(r, from_attributes=True) for r in rows]


async def revoke(session: AsyncSession, user: Principal, key_id: uuid.UUID) -> None:
    revoked = (
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
            .returning(ApiKey.id)
        )
    ).first()
    if revoked is None:
        raise NotFound("no such API key")
    emit(session, ApiKeyRevoked(key_id=key_id, user_id=user.id), user.id)


async def introspect(session: AsyncSession, key: str) -> IntrospectOut | None:
    if not key.startswith(API_KEY_PREFIX):
        return None
    row = (
        await session.execute(
            select(ApiKey.id, ApiKey.user_id, ApiKey.last_used_at, User.role)
            .join(User, User.id == ApiKey.user_id)
            .where(
                ApiKey.secret_hash == digest(key),
                ApiKey.revoked_at.is_(None),
                User.status != "deleted",
            )
        )
    ).first()
    if row is None:
        return None
    now = datetime.now(UTC)
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_GRANULARITY:
        await session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
    return IntrospectOut(key_id=row.id, user_id=row.user_id, role=row.role)
