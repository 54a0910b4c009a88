"""Answer a download from an index row: conditional requests, one byte range, streaming."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from shardz_common.errors import ProblemError
from shardz_storage.config import StorageSettings
from shardz_storage.domain.http import (
    RangeNotSatisfiable,
    attachment,
    etag_matches,
    http_date,
    parse_range,
    quoted_etag,
)
from shardz_storage.services.backend import Backend

DOWNLOAD_CHUNK = 512 * 1024


class RangeRefused(ProblemError):
    status, code, title = 416, "range_not_satisfiable", "Range Not Satisfiable"


def _headers(obj: dict[str, Any]) -> dict[str, str]:
    return {
        "ETag": quoted_etag(obj["etag"]),
        "Last-Modified": http_date(obj["updated_at"]),
        "Content-Disposition": attachment(obj["key"]),
        "X-Content-Type-Options": "nosniff",
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-cache",
    }


async def respond(
    request: Request, backend: Backend, settings: StorageSettings, obj: dict[str, Any]
) -> Response:
    headers = _headers(obj)
    if etag_matches(request.headers.get("if-none-match"), obj["etag"]):
        return Response(status_code=304, headers=headers)
    size = int(obj["size"])
    try:
        byte_range = parse_range(request.headers.get("range"), size)
    except RangeNotSatisfiable:
        raise RangeRefused(
            f"the object is {size} bytes long", headers={"Content-Range": f"bytes */{size}"}
        ) from None
    status, length = 200, size
    if byte_range is not None:
        status, length = 206, byte_range.length
        headers["Content-Range"] = byte_range.content_range(size)
    wanted = f"bytes={byte_range.start}-{byte_range.end}" if byte_range else None
    if request.method == "HEAD":
        headers["Content-Length"] = str(length)
        return Response(status_code=status, headers=headers, media_type=obj["content_type"])
    if settings.download_handoff_location:
        return _handoff(settings.download_handoff_location, backend, obj, headers, wanted)
    headers["Content-Length"] = str(length)
    upstream = await backend.open(obj["backend_key"], wanted)
    return StreamingResponse(
        # fewer, larger writes: each chunk crosses the ASGI stack and a syscall or two
        upstream.content.iter_chunked(DOWNLOAD_CHUNK),
        status_code=status,
        headers=headers,
        media_type=obj["content_type"],
        background=BackgroundTask(upstream.release),
    )


def _handoff(
    location: str,
    backend: Backend,
    obj: dict[str, Any],
    headers: dict[str, str],
    wanted: str | None,
) -> Response:
    """The gateway sends the body: it follows X-Accel-Redirect to its internal location, which
    fetches this short-lived store URL (with the range decided here) and answers with these
    headers; the store's own are dropped there. Content-Length and Content-Range come from
    the store's answer for exactly that range."""
    path, query = backend.handoff(obj["backend_key"])
    headers["X-Accel-Redirect"] = f"{location.rstrip('/')}{path}?{query}"
    headers.pop("Content-Range", None)
    if wanted:
        headers["X-Storage-Range"] = wanted
    return Response(status_code=200, headers=headers, media_type=obj["content_type"])
