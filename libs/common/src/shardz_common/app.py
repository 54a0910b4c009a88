"""The shape every service API shares: errors, request ids, metrics, health, auth."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import httpx
import structlog
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from shardz_common.auth import (
    Authenticator,
    IntrospectingApiKeyVerifier,
    JWKSKeySource,
    TokenVerifier,
)
from shardz_common.db import (
    make_engine,
    make_read_pool,
    make_read_sessionmaker,
    make_sessionmaker,
)
from shardz_common.errors import install_error_handlers
from shardz_common.events import SigningKeyRevoked
from shardz_common.logging import configure_logging
from shardz_common.middleware import (
    DashboardCORSMiddleware,
    MetricsMiddleware,
    RequestIdMiddleware,
)
from shardz_common.openapi import install_openapi
from shardz_common.settings import ServiceSettings
from shardz_common.telemetry import configure_tracing, fastapi_telemetry, instrument_engine

Hook = Callable[[FastAPI], Any]
log = structlog.get_logger(__name__)


def default_authenticator(settings: ServiceSettings, client: httpx.AsyncClient) -> Authenticator:
    p = settings.platform
    keys = JWKSKeySource(f"{p.identity_url}/.well-known/jwks.json", client)
    return Authenticator(
        TokenVerifier(keys, p.jwt_issuer, p.jwt_audience),
        IntrospectingApiKeyVerifier(
            p.identity_url,
            settings.secrets.identity_internal_secret,
            client,
            settings.api_key_cache_seconds,
        ),
    )


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    routers: list[Any],
    on_startup: Hook | None = None,
    on_shutdown: Hook | None = None,
    authenticator: Callable[[FastAPI], Authenticator] | None = None,
) -> FastAPI:
    configure_logging(settings.service_name, settings.platform.log_level)
    configure_tracing(settings.service_name, settings.platform.otlp_endpoint)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, settings.db_pool_size, settings.db_max_overflow)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.read_sessionmaker = make_read_sessionmaker(engine)
        app.state.read_pool = make_read_pool(settings.database_url, settings.db_pool_size)
        await app.state.read_pool.open(wait=False)
        app.state.http = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=20))
        app.state.broker = None
        app.state.authenticator = (
            authenticator(app) if authenticator else default_authenticator(settings, app.state.http)
        )
        instrument_engine(engine, settings.platform.otlp_endpoint)
        broker_task = asyncio.create_task(_connect_broker(app, settings.platform.amqp_url))
        if on_startup:
            await on_startup(app)
        try:
            yield
        finally:
            if on_shutdown:
                await on_shutdown(app)
            broker_task.cancel()
            if app.state.broker is not None:
                await app.state.broker.close()
            await app.state.http.aclose()
            await app.state.read_pool.close()
            await engine.dispose()

    app = FastAPI(
        title=title,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        telemetry=fastapi_telemetry(settings.platform.otlp_endpoint),  # type: ignore[arg-type]
    )
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware)
    # The dashboard calls the APIs with a bearer token, never a cookie: no credentials,
    # exactly one origin; inside RequestIdMiddleware so refusals carry the request id.
    app.add_middleware(
        DashboardCORSMiddleware,
        allow_origins=[settings.platform.dashboard_url()],
        allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=["X-Request-ID", "ETag", "Content-Disposition", "Retry-After"],
        max_age=600,
    )
    app.add_middleware(RequestIdMiddleware)
    for router in routers:
        app.include_router(router)
    _add_ops_routes(app)
    install_openapi(app)
    return app


async def _connect_broker(app: FastAPI, url: str) -> None:
    """Keep a broker connection for readiness and for revocations; robust, so it reconnects
    (and re-subscribes) by itself."""
    while True:
        try:
            app.state.broker = await aio_pika.connect_robust(url, reconnect_interval=1)
            break
        except Exception:
            await asyncio.sleep(2)
    while True:
        try:
            await _listen_for_key_revocations(app, app.state.broker)
            return
        except Exception:
            log.warning("cannot subscribe to signing_key.revoked yet; retrying", exc_info=True)
            await asyncio.sleep(2)


async def _listen_for_key_revocations(app: FastAPI, connection: Any) -> None:
    """Every API process hears `signing_key.revoked` on a queue of its own (exclusive, gone
    with the process) and stops accepting that key's tokens at once."""
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        app.state.settings.platform.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key=SigningKeyRevoked.event_type)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process(requeue=False):
            try:
                kid = SigningKeyRevoked.model_validate(json.loads(message.body)["data"]).kid
            except (ValueError, KeyError, TypeError):
                log.warning("malformed signing_key.revoked ignored")
                return
            app.state.authenticator.revoke_signing_key(kid)
            log.warning("signing key revoked; its tokens are refused from now on", kid=kid)

    await queue.consume(on_message)


def _add_ops_routes(app: FastAPI) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        checks = {"database": False, "broker": False}
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2), app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                checks["database"] = True
        broker = app.state.broker
        checks["broker"] = bool(broker is not None and not broker.is_closed)
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
