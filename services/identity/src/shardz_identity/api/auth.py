from __future__ import annotations

from fastapi import APIRouter, Response

from shardz_common.auth import AdminUser
from shardz_common.db import SessionDep
from shardz_common.errors import NotFound
from shardz_common.openapi import problems
from shardz_identity.deps import AddressDep, LimiterDep, SignupLimiterDep, TokensDep
from shardz_identity.domain.models import Credentials, LoginBody, RefreshBody, SignupOut, TokenPair
from shardz_identity.services import accounts, keyring

# the gateway limits requests to /v1/auth per address (PLATFORM_AUTH_RATE_LIMIT_PER_MINUTE)
router = APIRouter(prefix="/v1/auth", tags=["auth"], responses=problems(429))


@router.post("/signup", status_code=201, response_model=SignupOut, responses=problems(409))
async def signup(
    body: Credentials,
    session: SessionDep,
    tokens: TokensDep,
    limiter: SignupLimiterDep,
    address: AddressDep,
) -> SignupOut:
    await limiter.reserve(address)
    return await accounts.signup(session, tokens, body)


@router.post("/login", response_model=TokenPair, responses=problems(401))
async def login(
    body: LoginBody,
    session: SessionDep,
    tokens: TokensDep,
    limiter: LimiterDep,
    address: AddressDep,
) -> TokenPair:
    return await accounts.login(session, tokens, limiter, body, address)


@router.post("/refresh", response_model=TokenPair, responses=problems(401))
async def refresh(body: RefreshBody, session: SessionDep, tokens: TokensDep) -> TokenPair:
    return await tokens.refresh(session, body.refresh_token)


@router.post("/logout", status_code=204, responses=problems(401))
async def logout(body: RefreshBody, session: SessionDep, tokens: TokensDep) -> Response:
    await tokens.logout(session, body.refresh_token)
    return Response(status_code=204)


@router.post("/signing-keys/rotate", status_code=200)
async def rotate_signing_key(
    session: SessionDep, tokens: TokensDep, admin: AdminUser
) -> dict[str, str]:
    """Administrators: start signing with a new key; the old one stays in the JWKS."""
    kid = await keyring.rotate(session, tokens.keyring.fernet)
    tokens.keyring.invalidate()  # this replica reloads at its next use; others within 5 s
    return {"kid": kid}


@router.post("/signing-keys/{kid}/revoke", status_code=200)
async def revoke_signing_key(
    kid: str, session: SessionDep, tokens: TokensDep, admin: AdminUser
) -> dict[str, str]:
    """Administrators, in an emergency (a leaked private key): the key leaves the JWKS now and
    every service refuses its tokens within seconds; revoking the active key rotates first."""
    revoked = await keyring.revoke(session, tokens.keyring.fernet, kid)
    if revoked is None:
        raise NotFound("no such signing key")
    tokens.keyring.invalidate()
    return {"kid": revoked}
