"""First start: a signing key and the bootstrap administrator, once across replicas."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_identity.config import IdentitySettings
from shardz_identity.db.tables import SigningKey
from shardz_identity.services.accounts import create_user, find_live_user
from shardz_identity.services.keyring import ROTATION_LOCK, new_signing_key
from shardz_identity.services.passwords import hash_password

log = structlog.get_logger(__name__)


def _readable(key: SigningKey, fernet: Fernet) -> bool:
    try:
        fernet.decrypt(key.private_key)
    except InvalidToken:
        return False
    return True


async def bootstrap(
    sessions: async_sessionmaker[AsyncSession], settings: IdentitySettings, fernet: Fernet
) -> None:
    async with sessions() as s, s.begin():
        await s.execute(select(func.pg_advisory_xact_lock(ROTATION_LOCK)))
        active = (
            await s.execute(select(SigningKey).where(SigningKey.retired_at.is_(None)))
        ).scalar_one_or_none()
        if active is not None and not _readable(active, fernet):
            # IDENTITY_SECRET_KEY changed: the old key cannot sign any more. Retire it (its
            # public half stays in the JWKS for the overlap) and start a new one.
            log.warning("active signing key unreadable with the current secret; rotating")
            active.retired_at = datetime.now(UTC)
            active = None
            await s.flush()  # retired before its successor exists: one active key at a time
        if active is None:
            s.add(new_signing_key(fernet))
        email, password = settings.bootstrap_admin_email, settings.bootstrap_admin_password
        if email and password and await find_live_user(s, email) is None:
            await create_user(s, email, await hash_password(password), role="admin")
