"""Presigned download links: made with a credential, used without one."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import quote, urlencode
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from shardz_common.auth import CurrentUser
from shardz_common.db import ReadSessionDep
from shardz_common.errors import Forbidden, NotFound, Unavailable
from shardz_common.openapi import problems
from shardz_storage.api.objects import DOWNLOAD
from shardz_storage.api.schemas import PresignedLink, PresignRequest
from shardz_storage.config import StorageSettings
from shardz_storage.deps import BackendDep, SettingsDep
from shardz_storage.domain import presign
from shardz_storage.domain.keys import key_from_raw_path, validate_key
from shardz_storage.services import downloads, objects

router = APIRouter(prefix="/v1/storage", tags=["storage"])
PUBLIC = "/v1/storage/presigned"


def _secret(settings: StorageSettings) -> bytes:
    if not settings.secret_key:
        raise Unavailable("presigned links are not configured (STORAGE_SECRET_KEY)")
    return settings.secret_key.encode()


def _public_base(settings: StorageSettings) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    p = settings.platform
    port = "" if p.gateway_port == 80 else f":{p.gateway_port}"
    return f"http://api.{p.base_domain}{port}"


@router.post("/presign", response_model=PresignedLink, responses=problems(404))
async def create_link(
    body: PresignRequest, session: ReadSessionDep, user: CurrentUser, settings: SettingsDep
) -> PresignedLink:
    key = validate_key(body.key)
    obj = await objects.get_owned(session, user.id, key)
    expires = int(time.time()) + body.expires_in
    signature = presign.signature(_secret(settings), user.id, key, obj["version"], expires)
    query = urlencode({"version": str(obj["version"]), "expires": expires, "signature": signature})
    url = f"{_public_base(settings)}{PUBLIC}/{user.id}/{quote(key, safe='/')}?{query}"
    return PresignedLink(url=url, expires_at=datetime.fromtimestamp(expires, UTC))


@router.api_route(
    "/presigned/{user_id}/{key:path}",
    methods=["GET", "HEAD"],
    response_class=Response,
    responses={**DOWNLOAD, **problems(403)},
)
async def follow_link(
    user_id: UUID,
    key: str,
    request: Request,
    session: ReadSessionDep,
    backend: BackendDep,
    settings: SettingsDep,
    version: UUID = Query(),
    expires: int = Query(),
    signature: str = Query(max_length=128),
) -> Response:
    """No credential: the signature is the permission, for one version until it expires."""
    key = key_from_raw_path(request.scope.get("raw_path") or b"", f"{PUBLIC}/{user_id}/".encode())
    if not presign.is_valid(_secret(settings), user_id, key, version, expires, signature):
        raise Forbidden("the link is not valid")
    if expires < time.time():
        raise Forbidden("the link has expired")
    try:
        obj = await objects.get_owned(session, user_id, key)
    except NotFound:
        raise Forbidden("the object of this link was deleted") from None
    if obj["version"] != version:
        raise Forbidden("the object of this link was replaced")
    return await downloads.respond(request, backend, settings, obj)
