from __future__ import annotations

from fastapi import FastAPI

from shardz_common.app import create_service_app
from shardz_terminal.api import history, terminal
from shardz_terminal.config import TerminalSettings
from shardz_terminal.services.history import HistoryWriter
from shardz_terminal.services.registry import SessionRegistry


def create_app(settings: TerminalSettings | None = None) -> FastAPI:
    settings = settings or TerminalSettings()

    async def startup(app: FastAPI) -> None:
        dsn = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        app.state.origins = settings.origins()
        app.state.registry = SessionRegistry(
            app.state.read_pool,
            dsn,
            settings.max_sessions_per_user,
            settings.session_lease_seconds,
        )
        app.state.registry.start()
        app.state.history = HistoryWriter(app.state.read_pool, settings.history_flush_seconds)
        app.state.history.start()

    async def shutdown(app: FastAPI) -> None:
        await app.state.registry.stop()
        await app.state.history.stop()

    return create_service_app(
        settings,
        title="SmallShardz terminal gateway",
        routers=[history.router, terminal.router],
        on_startup=startup,
        on_shutdown=shutdown,
    )
