"""Domain errors and their RFC 9457 rendering (CONTRACT section 3)."""

from __future__ import annotations

from typing import Any

import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from shardz_common.context import request_id_var

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    """An error a client can act on. Subclasses fix status, code and title."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal Server Error"
    # When true, the request's transaction commits before the error is sent
    # (e.g. revoking a refresh-token family on reuse, then answering 401).
    commit: bool = False

    def __init__(
        self, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extra = extra


class Unauthenticated(ProblemError):
    status, code, title = 401, "unauthenticated", "Unauthenticated"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kw)


class Forbidden(ProblemError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(ProblemError):
    status, code, title = 404, "not_found", "Not Found"


class Conflict(ProblemError):
    status, code, title = 409, "conflict", "Conflict"


class ValidationFailed(ProblemError):
    status, code, title = 422, "validation_error", "Validation Error"

    def __init__(self, detail: str, *, field: str | None = None, **kw: Any) -> None:
        errors = [{"loc": ["body", field] if field else ["body"], "msg": detail}]
        super().__init__(detail, errors=errors, **kw)


class QuotaExceeded(ProblemError):
    status, code, title = 413, "quota_exceeded", "Quota Exceeded"


class PlanLimitReached(ProblemError):
    status, code, title = 403, "plan_limit_reached", "Plan Limit Reached"


class AccountSuspended(ProblemError):
    status, code, title = 403, "account_suspended", "Account Suspended"


class RateLimited(ProblemError):
    status, code, title = 429, "rate_limited", "Too Many Requests"

    def __init__(self, detail: str | None = None, *, retry_after: int, **kw: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))}, **kw)


class Unavailable(ProblemError):
    status, code, title = 503, "unavailable", "Service Unavailable"


_STATUS_CODES = {
    400: ("bad_request", "Bad Request"),
    401: ("unauthenticated", "Unauthenticated"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not Found"),
    405: ("method_not_allowed", "Method Not Allowed"),
    406: ("not_acceptable", "Not Acceptable"),
    409: ("conflict", "Conflict"),
    411: ("length_required", "Length Required"),
    413: ("payload_too_large", "Payload Too Large"),
    415: ("unsupported_media_type", "Unsupported Media Type"),
    416: ("range_not_satisfiable", "Range Not Satisfiable"),
    422: ("validation_error", "Validation Error"),
    429: ("rate_limited", "Too Many Requests"),
    503: ("unavailable", "Service Unavailable"),
}


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id_var.get(),
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


async def _on_problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem(exc.status, exc.code, exc.title, exc.detail, exc.headers, **exc.extra)


async def _on_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only location, message and type: the rejected input may be a password.
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return problem(
        422, "validation_error", "Validation Error", "the request is invalid", errors=errors
    )


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code, title = _STATUS_CODES.get(exc.status_code, ("error", "Error"))
    detail = exc.detail if isinstance(exc.detail, str) else title
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed here"
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem(exc.status_code, code, title, detail, headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method of the path: Starlette's 405 names only the first route that matched it
    (a path served by several routes, e.g. GET and PUT of one key, lists them all here)."""
    routes = request.app.router.routes
    return [
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    ]


async def _on_db_down(_: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable", error=type(exc).__name__)
    return problem(
        503,
        "unavailable",
        "Service Unavailable",
        "a dependency is unavailable",
        {"Retry-After": "5"},
    )


async def _on_db_error(request: Request, exc: Exception) -> JSONResponse:
    # PostgreSQL text cannot hold NUL; psycopg refuses such a value before sending it, so the
    # only source is the request (a field no model pattern guards yet): bad input, not a 500.
    if "cannot contain NUL" in str(getattr(exc, "orig", exc)):
        return problem(
            422,
            "validation_error",
            "Validation Error",
            "text values must not contain NUL characters",
            errors=[{"loc": ["request"], "msg": "contains a NUL character", "type": "value_error"}],
        )
    return await _on_unexpected(request, exc)


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "internal_error", "Internal Server Error", "an unexpected error occurred")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(OperationalError, _on_db_down)
    app.add_exception_handler(psycopg.OperationalError, _on_db_down)  # incl. pool timeouts
    app.add_exception_handler(ConnectionError, _on_db_down)
    app.add_exception_handler(DBAPIError, _on_db_error)
    app.add_exception_handler(psycopg.DataError, _on_db_error)
    # Anything else is answered by RequestIdMiddleware (it still knows the request id).
