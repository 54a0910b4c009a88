from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shardz_identity.services.ratelimit import LoginLimiter, SignupLimiter
from shardz_identity.services.tokens import TokenService


def _tokens(request: Request) -> TokenService:
    svc: TokenService = request.app.state.tokens
    return svc


def _limiter(request: Request) -> LoginLimiter:
    limiter: LoginLimiter = request.app.state.limiter
    return limiter


def _signup_limiter(request: Request) -> SignupLimiter:
    limiter: SignupLimiter = request.app.state.signup_limiter
    return limiter


def client_address(request: Request) -> str:
    # uvicorn applies X-Forwarded-For only from the trusted gateway address.
    return request.client.host if request.client else "unknown"


TokensDep = Annotated[TokenService, Depends(_tokens)]
LimiterDep = Annotated[LoginLimiter, Depends(_limiter)]
SignupLimiterDep = Annotated[SignupLimiter, Depends(_signup_limiter)]
AddressDep = Annotated[str, Depends(client_address)]
