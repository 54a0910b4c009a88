from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.requests import ClientDisconnect

from shardz_common.auth import CurrentUser
from shardz_common.db import ReadSessionDep, SessionDep
from shardz_common.errors import ValidationFailed
from shardz_common.openapi import BINARY, NO_NUL, binary_body, problems
from shardz_storage.api.schemas import ObjectList, ObjectOut
from shardz_storage.deps import BackendDep, PoolDep, SessionsDep, SettingsDep
from shardz_storage.domain.http import content_type
from shardz_storage.domain.keys import MAX_KEY_BYTES, key_from_raw_path, validate_key
from shardz_storage.services import downloads, objects
from shardz_storage.services.forms import FormUpload, boundary_of
from shardz_storage.services.uploads import Stored, Upload, put_whole

router = APIRouter(prefix="/v1/storage/objects", tags=["storage"])
PREFIX = b"/v1/storage/objects/"
# What a download answers: the bytes in the object's own content type, a range, or not modified.
DOWNLOAD: dict[int | str, dict[str, Any]] = {
    200: {"description": "the object's bytes", "content": {"*/*": {"schema": BINARY}}},
    206: {"description": "the requested range", "content": {"*/*": {"schema": BINARY}}},
    304: {"description": "not modified since the ETag the client holds"},
    **problems(416),
}
UPLOAD_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    # a form field is text whatever it spells ("false", "12"): no JSON type
                    # to declare (a declared one only invites "wrong type" values that no
                    # multipart body can carry)
                    "properties": {
                        "file": BINARY,
                        "key": {"description": "the object key, as text; default: the file name"},
                    },
                }
            }
        },
    }
}


def _key(request: Request) -> str:
    return key_from_raw_path(request.scope.get("raw_path") or b"", PREFIX)


def _length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise ValidationFailed("invalid Content-Length")
    return int(value)


def _answer(stored: Stored) -> Response:
    body = ObjectOut(
        key=stored.key,
        size=stored.size,
        etag=stored.etag,
        content_type=stored.content_type,
        updated_at=stored.updated_at,
    )
    return Response(
        body.model_dump_json(),
        status_code=201 if stored.created else 200,
        media_type="application/json",
    )


def _out(row: dict[str, Any]) -> ObjectOut:
    return ObjectOut(
        key=row["key"],
        size=row["size"],
        etag=row["etag"],
        content_type=row["content_type"],
        updated_at=row["updated_at"],
    )


@router.put(
    "/{key:path}",
    status_code=201,
    response_model=ObjectOut,
    responses={200: {"description": "replaced", "model": ObjectOut}, **problems(409)},
    openapi_extra=binary_body(),
)
async def put_object(
    key: str,
    request: Request,
    user: CurrentUser,
    sessions: SessionsDep,
    pool: PoolDep,
    backend: BackendDep,
    settings: SettingsDep,
) -> Response:
    """The raw body, streamed to the store; 201 for a new key, 200 when it replaces one."""
    key = _key(request)
    length = _length(request)
    media_type = content_type(request.headers.get("content-type"))
    if length is not None and length <= settings.whole_body_max_bytes:
        try:
            stored = await put_whole(
                sessions,
                pool,
                backend,
                settings,
                user.id,
                key,
                length,
                request.stream(),
                media_type,
            )
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening any more
        return _answer(stored)
    upload = Upload(sessions, pool, backend, settings, user.id, length)
    try:
        await upload.start(key)
        async for chunk in request.stream():
            if chunk:
                await upload.feed(chunk)
        stored = await upload.finish(key, media_type)
    except ClientDisconnect:
        await upload.abort()
        return Response(status_code=400)  # nobody is listening any more
    except BaseException:
        await upload.abort()
        raise
    return _answer(stored)


@router.post(
    "",
    status_code=201,
    response_model=ObjectOut,
    responses={200: {"description": "replaced", "model": ObjectOut}, **problems(409)},
    openapi_extra=UPLOAD_FORM,
)
async def post_object(
    request: Request,
    user: CurrentUser,
    sessions: SessionsDep,
    pool: PoolDep,
    backend: BackendDep,
    settings: SettingsDep,
) -> Response:
    """multipart/form-data with a `file` part and an optional `key` (default: its filename)."""
    form = FormUpload(
        Upload(sessions, pool, backend, settings, user.id, None),
        boundary_of(request.headers.get("content-type")),
    )
    try:
        _, stored = await form.run(request.stream(), validate_key)
    except ClientDisconnect:
        await form.upload.abort()
        return Response(status_code=400)
    except BaseException:
        await form.upload.abort()
        raise
    return _answer(stored)


@router.get("", response_model=ObjectList)
async def list_objects(
    session: ReadSessionDep,
    user: CurrentUser,
    prefix: Annotated[str, Query(max_length=MAX_KEY_BYTES, pattern=NO_NUL)] = "",
    limit: Annotated[int, Query(ge=1, le=objects.MAX_LIMIT)] = 100,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> ObjectList:
    items, next_cursor = await objects.list_page(session, user.id, prefix, limit, cursor)
    return ObjectList(items=[_out(r) for r in items], next_cursor=next_cursor)


@router.api_route(
    "/{key:path}", methods=["GET", "HEAD"], response_class=Response, responses=DOWNLOAD
)
async def get_object(
    key: str,
    request: Request,
    session: ReadSessionDep,
    user: CurrentUser,
    backend: BackendDep,
    settings: SettingsDep,
) -> Response:
    """The bytes, with ETag, Last-Modified, Range (206/416) and If-None-Match (304)."""
    obj = await objects.get_owned(session, user.id, _key(request))
    return await downloads.respond(request, backend, settings, obj)


@router.delete("/{key:path}", status_code=204)
async def delete_object(
    key: str, request: Request, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    await objects.delete(session, settings, user.id, _key(request))
    return Response(status_code=204)
