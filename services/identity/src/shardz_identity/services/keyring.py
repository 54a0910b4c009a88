"""Signing keys: Ed25519, persisted encrypted, rotatable; the JWKS serves old and new."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.events import SigningKeyRevoked
from shardz_identity.db.tables import SigningKey
from shardz_identity.services.events import emit

ROTATION_LOCK = 7412002  # one key change at a time: rotations and the first-start bootstrap


@dataclass(frozen=True)
class LoadedKeys:
    active_kid: str
    private: Ed25519PrivateKey
    public: dict[str, Ed25519PublicKey]
    jwks: dict[str, Any]


def new_signing_key(fernet: Fernet) -> SigningKey:
    private = Ed25519PrivateKey.generate()
    kid = uuid.uuid4().hex
    jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": kid, "alg": "EdDSA", "use": "sig"})
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SigningKey(kid=kid, private_key=fernet.encrypt(pem), public_jwk=jwk)


async def rotate(session: AsyncSession, fernet: Fernet) -> str:
    """Make a new active key; older keys stay in the JWKS for the overlap period. Concurrent
    rotations queue on a lock, so each retires the key the one before it made."""
    await session.execute(select(func.pg_advisory_xact_lock(ROTATION_LOCK)))
    await session.execute(
        update(SigningKey)
        .where(SigningKey.retired_at.is_(None))
        .values(retired_at=datetime.now(UTC))
    )
    key = new_signing_key(fernet)
    session.add(key)
    await session.flush()
    return key.kid


async def revoke(session: AsyncSession, fernet: Fernet, kid: str) -> str | None:
    """Emergency revocation: `kid` leaves the JWKS now and every service refuses its tokens
    (`signing_key.revoked`). Revoking the active key makes a new one first. Returns the
    revoked kid, or None when there is no such key."""
    await session.execute(select(func.pg_advisory_xact_lock(ROTATION_LOCK)))
    key = await session.get(SigningKey, kid, with_for_update=True)
    if key is None:
        return None
    if key.revoked_at is not None:
        return kid  # already revoked: nothing more to do or announce
    if key.retired_at is None:
        await rotate(session, fernet)
    key.revoked_at = datetime.now(UTC)
    emit(session, SigningKeyRevoked(kid=kid), kid)
    return kid


class KeyRing:
    """Keys cached for a few seconds, so every replica follows a rotation quickly."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        fernet: Fernet,
        overlap_seconds: int,
        ttl: float = 5.0,
    ) -> None:
        self.sessions = sessions
        self.fernet = fernet
        self.overlap = timedelta(seconds=overlap_seconds)
        self.ttl = ttl
        self._loaded: LoadedKeys | None = None
        self._at = 0.0

    async def keys(self, force: bool = False, max_age: float | None = None) -> LoadedKeys:
        age = time.monotonic() - self._at
        if force or self._loaded is None or age > (self.ttl if max_age is None else max_age):
            self._loaded = await self._load()
            self._at = time.monotonic()
        return self._loaded

    def invalidate(self) -> None:
        self._loaded = None

    async def key_for(self, kid: str) -> Any:
        loaded = await self.keys()
        key = loaded.public.get(kid)
        if key is None and time.monotonic() - self._at > 1.0:
            key = (await self.keys(force=True)).public.get(kid)
        return key

    async def sign(self, claims: dict[str, Any]) -> str:
        loaded = await self.keys()
        return jwt.encode(
            claims, loaded.private, algorithm="EdDSA", headers={"kid": loaded.active_kid}
        )

    async def _load(self) -> LoadedKeys:
        cutoff = datetime.now(UTC) - self.overlap
        async with self.sessions() as s:
            rows = (
                (
                    await s.execute(
                        select(SigningKey)
                        .where(
                            or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > cutoff),
                            SigningKey.revoked_at.is_(None),
                        )
                        .order_by(SigningKey.created_at.desc())
                    )
                )
                .scalars()
                .all()
            )
        active = next((r for r in rows if r.retired_at is None), None)
        if active is None:
            raise RuntimeError("no active signing key; identity bootstrap has not run")
        private = serialization.load_pem_private_key(
            self.fernet.decrypt(active.private_key), password=None
        )
        assert isinstance(private, Ed25519PrivateKey)
        public = {}
        for r in rows:
            pub = OKPAlgorithm.from_jwk(json.dumps(r.public_jwk))
            assert isinstance(pub, Ed25519PublicKey)
            public[r.kid] = pub
        return LoadedKeys(
            active_kid=active.kid,
            private=private,
            public=public,
            jwks={"keys": [r.public_jwk for r in rows]},
        )
