"""Service-to-service routes; the gateway never routes /internal."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request

from shardz_common.auth import check_internal_secret
from shardz_common.db import SessionDep
from shardz_common.errors import NotFound
from shardz_identity.domain.models import IntrospectBody, IntrospectOut
from shardz_identity.services import api_keys

router = APIRouter(prefix="/internal", include_in_schema=False)


@router.post("/api-keys/introspect", response_model=IntrospectOut)
async def introspect(
    body: IntrospectBody,
    session: SessionDep,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> IntrospectOut:
    check_internal_secret(
        authorization, request.app.state.settings.secrets.identity_internal_secret
    )
    found = await api_keys.introspect(session, body.key)
    if found is None:
        raise NotFound("unknown or revoked key")
    return found
