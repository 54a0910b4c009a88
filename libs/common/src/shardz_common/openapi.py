"""Every service's OpenAPI document tells the truth about its errors (CONTRACT section 3).

FastAPI documents a route's success answer and a 422 in its own shape; our errors are RFC 9457
problem+json and come from dependencies and use cases it cannot see. `install_openapi` adds,
to every operation, the problem answers it can really give:

- 401 and 403 where a route needs a credential (`current_user` declares the bearer security
  scheme, so clients and fuzzers know which routes refuse an anonymous caller);
- 404 where the path names a resource (someone else's answers 404 too, CONTRACT section 2);
- 422 where anything is parsed from the request, 414 where the path or query carries values
  (the gateway's request-line limit), 400 (unparsable) and 413 (the gateway's cap) where a
  body is read, 503 everywhere (a dependency down is answered, not a 500);
- whatever a route declares with `responses=problems(409, 429, ...)`: the statuses its use
  cases raise, which only the route's author knows.

A success answer that carries no body (`Response(status_code=202)`) is documented without
content instead of as "any JSON".
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import FastAPI

from shardz_common.errors import PROBLEM_JSON

# Text that reaches PostgreSQL cannot hold NUL: fields with no stricter pattern use this one,
# so the document says so and pydantic refuses it (422) before the database would (500).
NO_NUL = r"^[^\x00]*$"

PROBLEM_REF = "#/components/schemas/Problem"
VALIDATION_PROBLEM_REF = "#/components/schemas/ValidationProblem"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "An RFC 9457 problem; `code` is a stable word clients may rely on.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
        "request_id": {"type": ["string", "null"]},
    },
    "additionalProperties": True,
}
VALIDATION_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "ValidationProblem",
    "description": "A 422 problem; `errors` names each refused field (never its value).",
    "allOf": [
        {"$ref": PROBLEM_REF},
        {
            "type": "object",
            "properties": {
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                            "msg": {"type": "string"},
                            "type": {"type": "string"},
                        },
                    },
                }
            },
        },
    ],
}

_DESCRIPTIONS = {
    400: "Bad Request: the request is malformed",
    401: "Unauthenticated: no, a malformed, an expired or a revoked credential",
    403: "Forbidden: not allowed to this account (suspended, plan limit, not an administrator)",
    404: "Not Found: absent, or owned by someone else",
    409: "Conflict: the resource's state does not allow this",
    413: "Content Too Large: the body is over the gateway's cap or the quota",
    414: "URI Too Long: the request line is over the gateway's limit",
    416: "Range Not Satisfiable",
    422: "Validation Error: `errors` lists the refused fields",
    429: "Too Many Requests: retry after `Retry-After` seconds",
    503: "Service Unavailable: a dependency is down; nothing was half-done",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
    429: {"Retry-After": {"schema": {"type": "string"}}},
    503: {"Retry-After": {"schema": {"type": "string"}}},
}
_BODILESS_SUCCESS = {"202", "204"}


def problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI response object of a problem+json answer."""
    ref = VALIDATION_PROBLEM_REF if status == 422 else PROBLEM_REF
    response: dict[str, Any] = {
        "description": description or _DESCRIPTIONS.get(status, "Error"),
        "content": {PROBLEM_JSON: {"schema": {"$ref": ref}}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response


BINARY = {"type": "string", "format": "binary"}


def binary_body(media_type: str = "application/octet-stream") -> dict[str, Any]:
    """`openapi_extra=` of a route that reads its body as a raw stream (FastAPI cannot see it);
    no body is an empty one."""
    return {"requestBody": {"required": False, "content": {media_type: {"schema": BINARY}}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route decorator: the problem statuses its use cases raise."""
    return {status: problem_response(status) for status in statuses}


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and `/openapi.json`) document every problem answer."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Read from the document alone (not FastAPI's routing internals): security, parameters
    and request bodies say which problems an operation can answer."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["ValidationProblem"] = VALIDATION_PROBLEM_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            _document_operation(operation)
    _unique_operation_ids(schema)
    return schema


def _document_operation(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    parameters = operation.get("parameters", [])
    body = "requestBody" in operation
    statuses = {503}
    if operation.get("security"):
        statuses |= {401, 403}
    if any(p.get("in") == "path" for p in parameters):
        statuses.add(404)
    if parameters or body:
        statuses.add(422)
    if parameters:
        statuses.add(414)  # the gateway refuses a request line over its buffers
    if body:
        statuses |= {400, 413}
    for code in statuses:
        responses.setdefault(str(code), {})
    for key, response in responses.items():
        if key.isdigit() and int(key) >= 400:
            declared = response.get("description")
            fastapi_default = declared in (None, "Validation Error")
            responses[key] = problem_response(int(key), None if fastapi_default else declared)
        elif key in _BODILESS_SUCCESS and _any_json(response):
            # FastAPI documents a route that returns a bare `Response` as "any JSON".
            response.pop("content", None)


def _any_json(response: dict[str, Any]) -> bool:
    content = response.get("content") or {}
    return set(content) == {"application/json"} and not content["application/json"].get("schema")


def _unique_operation_ids(schema: dict[str, Any]) -> None:
    """A route serving GET and HEAD gets one operationId from FastAPI for both."""
    operations = [op for item in schema["paths"].values() for op in item.values()]
    seen = Counter(op.get("operationId") for op in operations)
    for path_item in schema["paths"].values():
        for method, op in path_item.items():
            op_id = op.get("operationId")
            if op_id and seen[op_id] > 1:
                stem = op_id.rsplit("_", 1)[0] if op_id.rsplit("_", 1)[-1] in path_item else op_id
                op["operationId"] = f"{stem}_{method}"
