from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel

from shardz_common.auth import CurrentUser
from shardz_common.db import SessionDep
from shardz_common.openapi import problems
from shardz_identity.domain.models import SignupOut
from shardz_identity.services.oauth import STATE_TTL, OAuthService

# 401: the provider or the sign-in state refused it; 409: an account already has the e-mail
router = APIRouter(prefix="/v1/auth/oauth", tags=["auth"], responses=problems(429))

NO_STORE = {"Cache-Control": "no-store"}
# Binds a sign-in to the browser that started it (see services/oauth.py).
BINDING_COOKIE = "shz_oauth"
COOKIE_PATH = "/v1/auth/oauth"


class LinkStarted(BaseModel):
    authorization_url: str


def _oauth(request: Request) -> OAuthService:
    # Built on first use: it caches the OIDC discovery document and JWKS for the process.
    svc: OAuthService | None = getattr(request.app.state, "oauth", None)
    if svc is None:
        svc = OAuthService(request.app.state.settings, request.app.state.tokens)
        request.app.state.oauth = svc
    return svc


OAuthDep = Annotated[OAuthService, Depends(_oauth)]


def _binding(request: Request) -> str:
    """The browser's binding value: kept while it lasts, so flows in two tabs both finish."""
    value = request.cookies.get(BINDING_COOKIE, "")
    return value if 32 <= len(value) <= 64 and value.isascii() else secrets.token_urlsafe(32)


def _set_binding(response: Response, oauth: OAuthService, value: str) -> None:
    response.set_cookie(
        BINDING_COOKIE,
        value,
        max_age=int(STATE_TTL.total_seconds()),
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",  # the provider's redirect back is a top-level GET: Lax sends it
        secure=oauth.settings.public_url.startswith("https://"),
    )


@router.get("/{provider}/authorize", status_code=302, response_class=RedirectResponse)
async def authorize(
    provider: str, request: Request, session: SessionDep, oauth: OAuthDep
) -> RedirectResponse:
    binding = _binding(request)
    url = await oauth.authorize_url(session, provider, binding)
    response = RedirectResponse(url, status_code=302, headers=NO_STORE)
    _set_binding(response, oauth, binding)
    return response


@router.post("/{provider}/link", response_model=LinkStarted, responses=problems(409))
async def link(
    provider: str, request: Request, session: SessionDep, oauth: OAuthDep, user: CurrentUser
) -> JSONResponse:
    """Signed in: start linking this provider to the account; send the browser to the URL.
    This is how an account that signed up with a password adds GitHub or Google sign-in."""
    binding = _binding(request)
    url = await oauth.authorize_url(session, provider, binding, link_user_id=user.id)
    response = JSONResponse({"authorization_url": url}, headers=NO_STORE)
    _set_binding(response, oauth, binding)
    return response


@router.get("/{provider}/callback", response_model=SignupOut, responses=problems(401, 409))
async def callback(
    provider: str,
    request: Request,
    session: SessionDep,
    oauth: OAuthDep,
    response: Response,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> SignupOut:
    """Signs the person in, creating the account on first use; same answer as sign-up.
    Only the browser that started the sign-in (its cookie) can finish it."""
    response.headers.update(NO_STORE)
    return await oauth.sign_in(
        session,
        provider,
        code=code,
        state=state,
        error=error,
        binding=request.cookies.get(BINDING_COOKIE),
    )
