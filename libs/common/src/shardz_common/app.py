"""The shape every service API shares: errors, request ids, metrics, health, auth."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import httpx
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
from shardz_common.logging import configure_logging
from shardz_common.middleware import MetricsMiddleware, RequestIdMiddleware
from shardz_common.settings import ServiceSettings
from shardz_common.telemetry import configure_tracing, fastapi_telemetry, instrument_engine

Hook = Callable[[FastAPI], Any]


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
    app.add_middleware(RequestIdMiddleware)
    for router in routers:
        app.include_router(router)
    _add_ops_routes(app)
    return app


async def _connect_broker(app: FastAPI, url: str) -> None:
    """Keep a broker connection for readiness; robust, so it reconnects by itself."""
    while True:
        try:
            app.state.broker = await aio_pika.connect_robust(url, reconnect_interval=1)
            return
        except Exception:
            await asyncio.sleep(2)


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
