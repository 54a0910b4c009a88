from __future__ import annotations

from fastapi import APIRouter, Response

from shardz_common.auth import CurrentUser
from shardz_common.db import SessionDep
from shardz_identity.deps import TokensDep
from shardz_identity.domain.models import MeOut
from shardz_identity.services import accounts

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.get("/me", response_model=MeOut)
async def me(session: SessionDep, user: CurrentUser) -> MeOut:
    row = await accounts.get_active(session, user)
    return MeOut(
        id=row.id, email=row.email, created_at=row.created_at, status=row.status, role=row.role
    )


@router.delete("/me", status_code=202)
async def delete_me(session: SessionDep, user: CurrentUser, tokens: TokensDep) -> Response:
    await accounts.delete_account(session, tokens, user)
    return Response(status_code=202)
