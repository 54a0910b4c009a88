from __future__ import annotations

from fastapi import APIRouter, Request, Response

from shardz_common.auth import CurrentUser
from shardz_common.db import SessionDep, read_connection
from shardz_identity.domain.models import MeOut
from shardz_identity.services import accounts

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.get("/me", response_model=MeOut)
async def me(request: Request, user: CurrentUser) -> MeOut:
    async with read_connection(request) as conn:
        return await accounts.me(conn, user)


@router.delete("/me", status_code=202)
async def delete_me(session: SessionDep, user: CurrentUser) -> Response:
    await accounts.delete_account(session, user)
    return Response(status_code=202)
