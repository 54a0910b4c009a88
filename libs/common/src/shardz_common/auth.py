"""Verification of credentials on every service (CONTRACT section 2).

Access tokens are EdDSA JWTs verified locally against identity's JWKS; the algorithm is
pinned. API keys (`shz_...`) are introspected at identity with the service credential and
cached for at most `api_key_cache_seconds`, so a revoked key stops working everywhere
within that time."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any, Protocol
from uuid import UUID

import httpx
import jwt
import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jwt import PyJWK

from shardz_common.errors import Forbidden, Unauthenticated, Unavailable

log = structlog.get_logger(__name__)

ALGORITHM = "EdDSA"
STALE_RETRY_SECONDS = 5.0
API_KEY_PREFIX = "shz_"


@dataclass(frozen=True)
class Principal:
    id: UUID
    role: str = "user"
    via: str = "jwt"  # or "api_key"
    key_id: UUID | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class KeySource(Protocol):
    async def key_for(self, kid: str) -> Any: ...

    def forget(self, kid: str) -> None:
        """An emergency revocation: never trust `kid` again."""


class JWKSKeySource:
    """Keys from a JWKS URL, cached; an unknown kid triggers at most one refetch per interval,
    and the whole set is refetched once it is `max_age_seconds` old, so a key that identity
    dropped (retired past its overlap) stops verifying within that time."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        min_refetch_seconds: float = 1.0,
        max_age_seconds: float = 30.0,
    ):
        self.url = url
        self.client = client
        self.min_refetch = min_refetch_seconds
        self.max_age = max_age_seconds
        self._keys: dict[str, Any] = {}
        self._revoked: set[str] = set()
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    def forget(self, kid: str) -> None:
        self._revoked.add(kid)
        self._keys.pop(kid, None)

    async def key_for(self, kid: str) -> Any:
        if kid in self._revoked:
            return None
        key = self._keys.get(kid)
        if key is not None:
            if time.monotonic() - self._fetched_at > self.max_age:
                await self._refresh_stale()
                return self._keys.get(kid)
            return key
        # Single-flight and at most one fetch per interval: a flood of made-up kids cannot
        # hammer identity, while a freshly rotated key is picked up within the interval.
        seen = self._fetched_at
        async with self._lock:
            if kid not in self._keys and self._fetched_at == seen:
                wait = self.min_refetch - (time.monotonic() - self._fetched_at)
                if wait > 0:
                    await asyncio.sleep(wait)
                if kid not in self._keys:
                    await self._refresh()
        return self._keys.get(kid)

    async def _refresh_stale(self) -> None:
        seen = self._fetched_at
        async with self._lock:
            if self._fetched_at != seen:
                return  # another request refreshed meanwhile
            try:
                await self._refresh()
            except Unavailable:
                # identity is unreachable: keep verifying with what we know rather than
                # refusing everyone, and try again in a few seconds
                self._fetched_at = time.monotonic() - self.max_age + STALE_RETRY_SECONDS

    async def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            resp = await self.client.get(self.url, timeout=5)
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("jwks fetch failed", error=repr(exc))
            self._fetched_at = 0.0 if not self._keys else self._fetched_at
            raise Unavailable("cannot verify credentials right now") from exc
        keys = {}
        for jwk in resp.json().get("keys", []):
            if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519" and "kid" in jwk:
                keys[jwk["kid"]] = PyJWK(jwk, algorithm=ALGORITHM).key
        self._keys = {kid: key for kid, key in keys.items() if kid not in self._revoked}


class TokenVerifier:
    """Verifies access tokens. A token already verified is remembered (by its exact bytes)
    until it expires, at most `cache_seconds`: a client reuses its token for many requests,
    and the signature check is the costliest step of an authenticated read."""

    def __init__(
        self,
        keys: KeySource,
        issuer: str,
        audience: str,
        *,
        cache_seconds: float = 60.0,
        cache_size: int = 10_000,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.cache_seconds = cache_seconds
        self.cache_size = cache_size
        # token -> (valid until, principal, kid)
        self._verified: dict[str, tuple[float, Principal, str]] = {}

    async def verify(self, token: str) -> Principal:
        now = time.time()
        hit = self._verified.get(token)
        if hit is not None:
            # still signed by a key we trust (a dropped or revoked key ends its tokens too)
            if hit[0] > now and await self.keys.key_for(hit[2]) is not None:
                return hit[1]
            del self._verified[token]
        principal, exp, kid = await self._verify(token)
        if len(self._verified) >= self.cache_size:
            self._verified.clear()
        self._verified[token] = (min(exp, now + self.cache_seconds), principal, kid)
        return principal

    def revoke_key(self, kid: str) -> None:
        """Stop accepting tokens signed with `kid`, including those verified already."""
        self.keys.forget(kid)
        self._verified = {t: hit for t, hit in self._verified.items() if hit[2] != kid}

    async def _verify(self, token: str) -> tuple[Principal, float, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated("malformed token") from exc
        if header.get("alg") != ALGORITHM or not isinstance(header.get("kid"), str):
            raise Unauthenticated("unsupported token")
        key = await self.keys.key_for(header["kid"])
        if key is None:
            raise Unauthenticated("unknown signing key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
                leeway=5,
            )
            principal = Principal(id=UUID(claims["sub"]), role=str(claims.get("role", "user")))
            return principal, float(claims["exp"]), header["kid"]
        except (jwt.PyJWTError, ValueError) as exc:
            raise Unauthenticated("invalid or expired token") from exc


class ApiKeyVerifier(Protocol):
    async def verify(self, key: str) -> Principal: ...


class IntrospectingApiKeyVerifier:
    """Asks identity about a key; caches answers briefly (revocation bound)."""

    def __init__(
        self, identity_url: str, secret: str | None, client: httpx.AsyncClient, ttl: float
    ):
        self.url = f"{identity_url}/internal/api-keys/introspect"
        self.secret = secret
        self.client = client
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def verify(self, key: str) -> Principal:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            principal = hit[1]
        else:
            principal = await self._introspect(key)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now, principal)
        if principal is None:
            raise Unauthenticated("invalid or revoked API key")
        return principal

    async def _introspect(self, key: str) -> Principal | None:
        try:
            resp = await self.client.post(
                self.url,
                json={"key": key},
                headers={"Authorization": f"Bearer {self.secret or ''}"},
                timeout=5,
            )
        except httpx.HTTPError as exc:
            raise Unavailable("cannot verify credentials right now") from exc
        if resp.status_code == 200:
            data = resp.json()
            return Principal(
                id=UUID(data["user_id"]),
                role=data.get("role", "user"),
                via="api_key",
                key_id=UUID(data["key_id"]),
            )
        if resp.status_code == 404:
            return None
        raise Unavailable("cannot verify credentials right now")


class Authenticator:
    def __init__(self, tokens: TokenVerifier, api_keys: ApiKeyVerifier) -> None:
        self.tokens = tokens
        self.api_keys = api_keys

    def revoke_signing_key(self, kid: str) -> None:
        self.tokens.revoke_key(kid)

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthenticated("missing credentials")
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthenticated("expected a bearer credential")
        if credential.startswith(API_KEY_PREFIX):
            return await self.api_keys.verify(credential)
        return await self.tokens.verify(credential)


# Declares the bearer scheme on every route that needs a credential (OpenAPI `security`);
# it never refuses by itself: `Authenticator` judges the header.
_bearer_scheme = HTTPBearer(
    scheme_name="bearer",
    description="An access token from /v1/auth (a JWT) or an API key (`shz_...`).",
    auto_error=False,
)


async def current_user(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)]
) -> Principal:
    auth: Authenticator = request.app.state.authenticator
    return await auth.authenticate(request.headers.get("authorization"))


async def admin_user(user: Annotated[Principal, Depends(current_user)]) -> Principal:
    if not user.is_admin:
        raise Forbidden("administrators only")
    return user


CurrentUser = Annotated[Principal, Depends(current_user)]
AdminUser = Annotated[Principal, Depends(admin_user)]


def check_internal_secret(authorization: str | None, expected: str | None) -> None:
    """Internal routes: the caller presents the callee's service secret."""
    import hmac

    presented = (authorization or "").removeprefix("Bearer ").strip()
    if (
        not expected
        or not presented
        or not hmac.compare_digest(presented.encode(), expected.encode())
    ):
        raise Unauthenticated("service credential required")
