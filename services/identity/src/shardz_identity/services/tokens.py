"""Access tokens (EdDSA JWT, <= 15 min) and rotating refresh tokens with reuse detection."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.errors import Unauthenticated
from shardz_identity.config import IdentitySettings
from shardz_identity.db.tables import RefreshToken, User
from shardz_identity.domain.models import TokenPair
from shardz_identity.services.keyring import KeyRing


class RefreshReused(Unauthenticated):
    # The family revocation must be committed even though the answer is 401.
    commit = True


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenService:
    def __init__(self, keyring: KeyRing, settings: IdentitySettings) -> None:
        self.keyring = keyring
        self.settings = settings
        self.family_max_age = timedelta(days=settings.refresh_family_max_days)

    async def access_token(self, user: User) -> str:
        now = int(time.time())
        p = self.settings.platform
        return await self.keyring.sign(
            {
                "iss": p.jwt_issuer,
                "aud": p.jwt_audience,
                "sub": str(user.id),
                "iat": now,
                "exp": now + min(self.settings.access_token_seconds, 900),
                "jti": uuid.uuid4().hex,
                "role": user.role,
            }
        )

    async def issue(
        self, session: AsyncSession, user: User, parent: RefreshToken | None = None
    ) -> TokenPair:
        """A new sign-in, or (with `parent`) the next token of its family, which never
        outlives the family's maximum age however often it is rotated."""
        secret = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        started = now
        if parent is not None:
            started = parent.family_started_at or parent.created_at
        family_end = started + self.family_max_age
        token = RefreshToken(
            id=uuid.uuid4(),
            family_id=parent.family_id if parent is not None else uuid.uuid4(),
            user_id=user.id,
            secret_hash=_digest(secret),
            family_started_at=started,
            expires_at=min(now + timedelta(days=self.settings.refresh_token_days), family_end),
        )
        session.add(token)
        await session.flush()
        return TokenPair(
            access_token=await self.access_token(user),
            expires_in=min(self.settings.access_token_seconds, 900),
            refresh_token=f"{token.id}.{secret}",
        )

    async def refresh(self, session: AsyncSession, presented: str) -> TokenPair:
        token = await self._lookup(session, presented, lock=True)
        if token is None:
            raise Unauthenticated("invalid refresh token")
        if token.used_at is not None or token.revoked_at is not None:
            await self.revoke_family(session, token.family_id)
            raise RefreshReused("refresh token already used; all sessions of it are revoked")
        now = datetime.now(UTC)
        started = token.family_started_at or token.created_at
        if token.expires_at <= now or started + self.family_max_age <= now:
            raise Unauthenticated("refresh token expired; sign in again")
        user = await session.get(User, token.user_id)
        if user is None or user.status == "deleted":
            raise Unauthenticated("account no longer exists")
        token.used_at = datetime.now(UTC)
        return await self.issue(session, user, parent=token)

    async def logout(self, session: AsyncSession, presented: str) -> None:
        token = await self._lookup(session, presented, lock=False)
        if token is not None:
            await self.revoke_family(session, token.family_id)

    async def revoke_family(self, session: AsyncSession, family_id: uuid.UUID) -> None:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )

    async def _lookup(
        self, session: AsyncSession, presented: str, *, lock: bool
    ) -> RefreshToken | None:
        raw_id, _, secret = presented.partition(".")
        try:
            token_id = uuid.UUID(raw_id)
        except ValueError:
            return None
        stmt = select(RefreshToken).where(RefreshToken.id == token_id)
        if lock:
            stmt = stmt.with_for_update()
        token = (await session.execute(stmt)).scalar_one_or_none()
        if token is None or not hmac.compare_digest(token.secret_hash, _digest(secret)):
            return None
        return token
