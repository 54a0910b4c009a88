"""Pure ASGI middleware: request ids and Prometheus metrics, cheap on the hot path."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import Counter, Histogram
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shardz_common.context import request_id_var
from shardz_common.errors import problem
from shardz_common.telemetry import extract_context

log = structlog.get_logger(__name__)

REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Echo a sane X-Request-ID or mint one; expose it to logs and error bodies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = None
        traceparent = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                rid = candidate if _SAFE_ID.match(candidate) else None
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
        rid = rid or uuid.uuid4().hex
        token = request_id_var.set(rid)
        trace_token = None
        if traceparent and not trace.get_current_span().get_span_context().is_valid:
            # No span was started for this request (no collector configured): still carry the
            # caller's trace into logs and the events this request writes.
            trace_token = otel_context.attach(extract_context({"traceparent": traceparent}))
        structlog.contextvars.bind_contextvars(request_id=rid)
        raw = rid.encode()

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", raw)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Unexpected errors are answered here, inside the request's context, so the
            # problem body and header carry the request id (Starlette's outermost handler
            # would run after it is gone).
            if scope["type"] != "http" or started:
                raise
            log.exception("unhandled error", exc_info=exc)
            response = problem(
                500, "internal_error", "Internal Server Error", "an unexpected error occurred"
            )
            await response(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
            request_id_var.reset(token)
            if trace_token is not None:
                otel_context.detach(trace_token)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # labelled children, looked up once per (method, route, status): `.labels()` is the
        # costly part of recording a request
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = scope.get("route")
            key = (scope["method"], getattr(route, "path", "unmatched"), status)
            children = self._children.get(key)
            if children is None:
                children = (
                    REQUESTS.labels(key[0], key[1], str(status)),
                    LATENCY.labels(key[0], key[1]),
                )
                self._children[key] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - start)


class DashboardCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, whose refused preflight is problem+json like every other 4xx."""

    def preflight_response(self, request_headers: Any) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        detail = bytes(response.body).decode(errors="replace")  # "Disallowed CORS origin"
        return problem(403, "forbidden", "Forbidden", f"CORS preflight refused: {detail}")
