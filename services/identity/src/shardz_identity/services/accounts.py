"""Sign-up, sign-in, the current user and account deletion."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from psycopg import AsyncConnection
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.auth import Principal
from shardz_common.errors import Conflict, Unauthenticated
from shardz_common.events import ApiKeyRevoked, UserCreated, UserDeleted
from shardz_identity.db.tables import ApiKey, RefreshToken, User
from shardz_identity.domain.models import (
    Credentials,
    LoginBody,
    MeOut,
    SignupOut,
    TokenPair,
    UserOut,
)
from shardz_identity.services.events import emit
from shardz_identity.services.passwords import hash_password, verify_password
from shardz_identity.services.ratelimit import LoginLimiter
from shardz_identity.services.tokens import TokenService


def email_key(email: str) -> str:
    return email.strip().lower()


async def find_live_user(session: AsyncSession, email: str) -> User | None:
    stmt = select(User).where(func.lower(User.email) == email_key(email), User.status != "deleted")
    return (await session.execute(stmt)).scalar_one_or_none()


async def create_user(
    session: AsyncSession, email: str, password_hash: str | None, role: str = "user"
) -> User:
    if await find_live_user(session, email) is not None:
        raise Conflict("this e-mail is already registered")
    user = User(id=uuid.uuid4(), email=email.strip(), password_hash=password_hash, role=role)
    session.add(user)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:  # a concurrent sign-up won the race
        raise Conflict("this e-mail is already registered") from exc
    emit(session, UserCreated(user_id=user.id, email=user.email), user.id)
    return user


async def signup(session: AsyncSession, tokens: TokenService, body: Credentials) -> SignupOut:
    user = await create_user(session, str(body.email), await hash_password(body.password))
    pair = await tokens.issue(session, user)
    return SignupOut(
        user=UserOut(id=user.id, email=user.email, created_at=user.created_at),
        **pair.model_dump(),
    )


async def login(
    session: AsyncSession,
    tokens: TokenService,
    limiter: LoginLimiter,
    body: LoginBody,
    address: str,
) -> TokenPair:
    key = email_key(body.email)
    reservation = await limiter.reserve(key, address)  # stays as the failure unless we succeed
    user = await find_live_user(session, body.email)
    ok = await verify_password(user.password_hash if user else None, body.password)
    if not ok or user is None:
        raise Unauthenticated("wrong e-mail or password")
    await limiter.succeeded(session, reservation, key, address)
    return await tokens.issue(session, user)


async def get_active(session: AsyncSession, principal: Principal) -> User:
    user = await session.get(User, principal.id)
    if user is None or user.status == "deleted":
        raise Unauthenticated("account no longer exists")
    return user


async def me(conn: AsyncConnection, principal: Principal) -> MeOut:
    """The hot authenticated read: one indexed row over the plain psycopg read pool."""
    cur = await conn.execute(
        "SELECT id, email, created_at, status, role FROM users"
        " WHERE id = %s AND status <> 'deleted'",
        (principal.id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise Unauthenticated("account no longer exists")
    return MeOut(id=row[0], email=row[1], created_at=row[2], status=row[3], role=row[4])


async def revoke_credentials(session: AsyncSession, user: User) -> None:
    """End every way into the account: password, refresh-token families, API keys."""
    now = datetime.now(UTC)
    user.password_hash = None
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    revoked = (
        await session.execute(
            update(ApiKey)
            .where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(ApiKey.id)
        )
    ).scalars()
    for key_id in revoked:
        emit(session, ApiKeyRevoked(key_id=key_id, user_id=user.id), user.id)


async def delete_account(session: AsyncSession, principal: Principal) -> None:
    user = await get_active(session, principal)
    user.status = "deleted"
    user.deleted_at = datetime.now(UTC)
    await revoke_credentials(session, user)
    emit(session, UserDeleted(user_id=user.id), user.id)


async def set_status(
    session: AsyncSession, user_id: uuid.UUID, status: str, occurred_at: datetime
) -> None:
    """Reflect billing's account.* events; a deleted account stays deleted, and an event
    older than the last applied one changes nothing."""
    await session.execute(
        update(User)
        .where(
            User.id == user_id,
            User.status != "deleted",
            or_(User.status_at.is_(None), User.status_at <= occurred_at),
        )
        .values(status=status, status_at=occurred_at)
    )
