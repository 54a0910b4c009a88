"""Exports and imports of a database, for its owner (CONTRACT section 5)."""

from __future__ import annotations

import time
from uuid import UUID

import httpx
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask

from shardz_common.auth import CurrentUser
from shardz_common.db import ReadSessionDep, SessionDep
from shardz_common.errors import Forbidden, Unavailable, ValidationFailed
from shardz_common.openapi import problems
from shardz_provisioner.api.schemas import (
    ExportOut,
    ImportFromObject,
    ImportOut,
    JobStarted,
)
from shardz_provisioner.db.tables import Database, DumpJob
from shardz_provisioner.deps import SessionsDep, SettingsDep
from shardz_provisioner.domain import links
from shardz_provisioner.services import dumps

router = APIRouter(prefix="/v1/databases", tags=["exports and imports"])
JSON_BODY_MAX = 64 * 1024

_IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ImportFromObject.model_json_schema()},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "a pg_dump custom-format archive, or plain SQL text",
            },
        },
    }
}


@router.post(
    "/{database_id}/exports",
    status_code=202,
    response_model=JobStarted,
    responses=problems(403, 409, 429),
)
async def start_export(
    database_id: UUID, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> JobStarted:
    """A `pg_dump -Fc` of the database, made as its owner; kept 7 days."""
    return await dumps.start_export(session, settings, user, database_id)


@router.get("/{database_id}/exports/{export_id}", response_model=ExportOut)
async def show_export(
    database_id: UUID,
    export_id: UUID,
    session: ReadSessionDep,
    user: CurrentUser,
    settings: SettingsDep,
) -> ExportOut:
    return await dumps.show_export(session, settings, user, database_id, export_id)


@router.get(
    "/{database_id}/exports/{export_id}/download",
    response_class=Response,
    responses=problems(403),
)
async def download_export(
    database_id: UUID,
    export_id: UUID,
    request: Request,
    session: ReadSessionDep,
    settings: SettingsDep,
    expires: int = Query(),
    signature: str = Query(max_length=128),
) -> Response:
    """No credential: the signature is the permission, until it expires."""
    if not links.is_valid(settings.fernet_key(), database_id, export_id, expires, signature):
        raise Forbidden("the link is not valid")
    if expires < time.time():
        raise Forbidden("the link has expired")
    job = await session.get(DumpJob, export_id)
    db = await session.get(Database, database_id)
    if (
        job is None
        or db is None
        or db.status in ("deleting", "deleted")
        or job.database_id != database_id
        or job.status != "done"
        or job.store_key is None
        or job.expires_at is None
        or job.expires_at.timestamp() < time.time()
    ):
        raise Forbidden("the export of this link was removed")
    http: httpx.AsyncClient = request.app.state.http
    upstream_request = http.build_request("GET", request.app.state.dump_store.url(job.store_key))
    try:
        upstream = await http.send(upstream_request, stream=True)
    except httpx.HTTPError as exc:
        raise Unavailable("the dump store is unavailable") from exc
    if upstream.status_code != 200:
        await upstream.aclose()
        raise Unavailable("the dump store is unavailable")
    filename = f"{db.name}-{job.created_at:%Y%m%d-%H%M%S}.dump"
    return StreamingResponse(
        upstream.aiter_raw(512 * 1024),
        media_type="application/octet-stream",
        headers={
            "Content-Length": upstream.headers.get("content-length", str(job.size_bytes)),
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        },
        background=BackgroundTask(upstream.aclose),
    )


@router.post(
    "/{database_id}/imports",
    status_code=202,
    response_model=JobStarted,
    openapi_extra=_IMPORT_BODY,
    responses=problems(403, 409, 413),
)
async def start_import(
    database_id: UUID,
    request: Request,
    sessions: SessionsDep,
    user: CurrentUser,
    settings: SettingsDep,
) -> JobStarted:
    """`{"object_key"}` of a dump in your storage, or the dump itself as the body
    (custom format or plain SQL, at most PROVISIONER_IMPORT_MAX_BYTES)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json":
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > JSON_BODY_MAX:
                raise ValidationFailed('a JSON body holds only {"object_key"}')
        try:
            body = ImportFromObject.model_validate_json(raw)
        except ValidationError as exc:
            raise ValidationFailed('expected {"object_key": "..."}', field="object_key") from exc
        async with sessions() as s, s.begin():
            return await dumps.start_import_from_object(
                s, settings, request.app.state.http, user, database_id, body.object_key
            )
    length = request.headers.get("content-length")
    if length is not None and not length.isdigit():
        raise ValidationFailed("invalid Content-Length")
    return await dumps.start_import_upload(
        sessions,
        settings,
        request.app.state.dump_store,
        user,
        database_id,
        int(length) if length is not None else None,
        request.stream(),
    )


@router.get("/{database_id}/imports/{import_id}", response_model=ImportOut)
async def show_import(
    database_id: UUID, import_id: UUID, session: ReadSessionDep, user: CurrentUser
) -> ImportOut:
    return await dumps.show_import(session, user, database_id, import_id)
