from __future__ import annotations

from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.app import create_service_app
from shardz_common.auth import Authenticator, Principal, TokenVerifier
from shardz_common.errors import Unauthenticated
from shardz_identity.api import api_keys, auth, internal, jwks, oauth, users
from shardz_identity.config import IdentitySettings
from shardz_identity.services import api_keys as api_key_service
from shardz_identity.services.bootstrap import bootstrap
from shardz_identity.services.keyring import KeyRing
from shardz_identity.services.ratelimit import LoginLimiter, SignupLimiter
from shardz_identity.services.tokens import TokenService


class LocalApiKeys:
    """Identity checks API keys in its own database (other services introspect)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def verify(self, key: str) -> Principal:
        async with self.sessions() as s, s.begin():
            found = await api_key_service.introspect(s, key)
        if found is None:
            raise Unauthenticated("invalid or revoked API key")
        return Principal(id=found.user_id, role=found.role, via="api_key", key_id=found.key_id)


def create_app(settings: IdentitySettings | None = None) -> FastAPI:
    settings = settings or IdentitySettings()
    fernet = Fernet(settings.fernet_key())

    async def startup(app: FastAPI) -> None:
        await bootstrap(app.state.sessionmaker, settings, fernet)
        keyring = KeyRing(app.state.sessionmaker, fernet, settings.signing_key_overlap_seconds)
        app.state.keyring = keyring
        app.state.tokens = TokenService(keyring, settings)
        app.state.limiter = LoginLimiter(settings, app.state.sessionmaker)
        app.state.signup_limiter = SignupLimiter(settings, app.state.sessionmaker)

    def authenticator(app: FastAPI) -> Authenticator:
        p = settings.platform

        class _Keys:
            def __init__(self) -> None:
                self.revoked: set[str] = set()

            async def key_for(self, kid: str) -> object:
                if kid in self.revoked:
                    return None
                return await app.state.keyring.key_for(kid)

            def forget(self, kid: str) -> None:
                self.revoked.add(kid)
                app.state.keyring.invalidate()

        return Authenticator(
            TokenVerifier(_Keys(), p.jwt_issuer, p.jwt_audience),
            LocalApiKeys(app.state.sessionmaker),
        )

    return create_service_app(
        settings,
        title="SmallShardz identity",
        routers=[
            auth.router,
            oauth.router,
            users.router,
            api_keys.router,
            jwks.router,
            internal.router,
        ],
        on_startup=startup,
        authenticator=authenticator,
    )
