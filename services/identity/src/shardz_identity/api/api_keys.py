from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request, Response

from shardz_common.auth import CurrentUser
from shardz_common.db import SessionDep
from shardz_identity.domain.models import ApiKeyCreate, ApiKeyCreated, ApiKeyList
from shardz_identity.services import api_keys

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_key(
    body: ApiKeyCreate, request: Request, session: SessionDep, user: CurrentUser
) -> ApiKeyCreated:
    cap = request.app.state.settings.api_keys_max_per_user
    return await api_keys.create(session, user, body.name, cap)


@router.get("", response_model=ApiKeyList)
async def list_keys(session: SessionDep, user: CurrentUser) -> ApiKeyList:
    return ApiKeyList(items=await api_keys.list_for(session, user))


@router.delete("/{key_id}", status_code=204)
async def revoke_key(key_id: UUID, session: SessionDep, user: CurrentUser) -> Response:
    await api_keys.revoke(session, user, key_id)
    return Response(status_code=204)
