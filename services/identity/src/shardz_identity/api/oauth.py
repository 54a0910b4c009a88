from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from shardz_common.db import SessionDep
from shardz_identity.domain.models import SignupOut
from shardz_identity.services.oauth import OAuthService

router = APIRouter(prefix="/v1/auth/oauth", tags=["auth"])

NO_STORE = {"Cache-Control": "no-store"}


def _oauth(request: Request) -> OAuthService:
    # Built on first use: it caches the OIDC discovery document and JWKS for the process.
    svc: OAuthService | None = getattr(request.app.state, "oauth", None)
    if svc is None:
        svc = OAuthService(request.app.state.settings, request.app.state.tokens)
        request.app.state.oauth = svc
    return svc


OAuthDep = Annotated[OAuthService, Depends(_oauth)]


@router.get("/{provider}/authorize", status_code=302, response_class=RedirectResponse)
async def authorize(provider: str, session: SessionDep, oauth: OAuthDep) -> RedirectResponse:
    url = await oauth.authorize_url(session, provider)
    return RedirectResponse(url, status_code=302, headers=NO_STORE)


@router.get("/{provider}/callback", response_model=SignupOut)
async def callback(
    provider: str,
    session: SessionDep,
    oauth: OAuthDep,
    response: Response,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> SignupOut:
    """Signs the person in, creating the account on first use; same answer as sign-up."""
    response.headers.update(NO_STORE)
    return await oauth.sign_in(session, provider, code=code, state=state, error=error)
