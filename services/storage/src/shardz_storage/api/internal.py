"""Service-to-service: the provisioner reads a user's object to import it into a database.
Never routed by the gateway; the caller presents storage's internal secret."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Request, Response

from shardz_common.auth import check_internal_secret
from shardz_common.db import ReadSessionDep
from shardz_storage.deps import BackendDep
from shardz_storage.domain.keys import key_from_raw_path
from shardz_storage.services import downloads, objects

router = APIRouter(prefix="/internal", include_in_schema=False)
PREFIX = "/internal/objects"


@router.api_route("/objects/{user_id}/{key:path}", methods=["GET", "HEAD"])
async def read_object(
    user_id: UUID,
    key: str,
    request: Request,
    session: ReadSessionDep,
    backend: BackendDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """The object `key` of `user_id`'s space, exactly as its owner would download it; 404 when
    that user has no such object (whoever else has one under that key)."""
    check_internal_secret(authorization, request.app.state.settings.secrets.storage_internal_secret)
    key = key_from_raw_path(request.scope.get("raw_path") or b"", f"{PREFIX}/{user_id}/".encode())
    obj = await objects.get_owned(session, user_id, key)
    # a service reads this directly, not through the gateway: no X-Accel-Redirect handoff
    direct = request.app.state.settings.model_copy(update={"download_handoff_location": None})
    return await downloads.respond(request, backend, direct, obj)
