from __future__ import annotations

from typing import TypeVar

from fastapi import APIRouter, Request, Response

from shardz_common.auth import AdminUser
from shardz_common.db import SessionDep
from shardz_common.errors import NotFound, Unauthenticated
from shardz_common.openapi import problems
from shardz_identity.api import session_cookie
from shardz_identity.api.session_cookie import cookie_mode
from shardz_identity.deps import AddressDep, LimiterDep, SignupLimiterDep, TokensDep
from shardz_identity.domain.models import Credentials, LoginBody, RefreshBody, SignupOut, TokenPair
from shardz_identity.services import accounts, keyring

P = TypeVar("P", bound=TokenPair)

# the gateway limits requests to /v1/auth per address (PLATFORM_AUTH_RATE_LIMIT_PER_MINUTE)
router = APIRouter(prefix="/v1/auth", tags=["auth"], responses=problems(429))


@router.post("/signup", status_code=201, response_model=SignupOut, responses=problems(409))
async def signup(
    body: Credentials,
    request: Request,
    response: Response,
    session: SessionDep,
    tokens: TokensDep,
    limiter: SignupLimiterDep,
    address: AddressDep,
) -> SignupOut:
    cookies = cookie_mode(request)
    await limiter.reserve(address)
    out = await accounts.signup(session, tokens, body)
    return _hand_over(request, response, out, cookies)


@router.post("/login", response_model=TokenPair, responses=problems(401))
async def login(
    body: LoginBody,
    request: Request,
    response: Response,
    session: SessionDep,
    tokens: TokensDep,
    limiter: LimiterDep,
    address: AddressDep,
) -> TokenPair:
    cookies = cookie_mode(request)
    pair = await accounts.login(session, tokens, limiter, body, address)
    return _hand_over(request, response, pair, cookies)


@router.post("/refresh", response_model=TokenPair, responses=problems(401))
async def refresh(
    request: Request,
    response: Response,
    session: SessionDep,
    tokens: TokensDep,
    body: RefreshBody | None = None,
) -> TokenPair:
    """A new pair for a refresh token from the body or, in cookie mode, from the cookie."""
    cookies = cookie_mode(request)
    token = session_cookie.presented(request) if cookies else _from_body(body)
    if token is None:
        raise Unauthenticated("no session: sign in again")
    pair = await tokens.refresh(session, token)
    return _hand_over(request, response, pair, cookies)


@router.post("/logout", status_code=204, responses=problems(401))
async def logout(
    request: Request, session: SessionDep, tokens: TokensDep, body: RefreshBody | None = None
) -> Response:
    cookies = cookie_mode(request)
    token = session_cookie.presented(request) if cookies else _from_body(body)
    if token is not None:
        await tokens.logout(session, token)
    response = Response(status_code=204)
    if cookies:
        session_cookie.clear_refresh(request, response)
    return response


def _from_body(body: RefreshBody | None) -> str:
    # the body is optional in the document (cookie mode has none): without one, and without
    # the cookie, there is no session to speak of, as for a wrong token
    if body is None:
        raise Unauthenticated('no refresh token: send {"refresh_token"} or sign in again')
    return body.refresh_token


def _hand_over(request: Request, response: Response, pair: P, cookies: bool) -> P:
    """In cookie mode the refresh token goes into the HttpOnly cookie and never into the
    body, where script (and so an XSS) could read it."""
    if not cookies:
        return pair
    session_cookie.set_refresh(request, response, pair.refresh_token)
    return pair.model_copy(update={"refresh_token": ""})


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
