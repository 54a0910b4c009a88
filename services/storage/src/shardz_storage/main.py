from __future__ import annotations

from fastapi import FastAPI

from shardz_common.app import create_service_app
from shardz_storage.api import internal, links, objects, space
from shardz_storage.config import StorageSettings
from shardz_storage.services.backend import Backend


def create_app(settings: StorageSettings | None = None) -> FastAPI:
    settings = settings or StorageSettings()

    async def startup(app: FastAPI) -> None:
        app.state.backend = Backend(settings)

    async def shutdown(app: FastAPI) -> None:
        await app.state.backend.close()

    return create_service_app(
        settings,
        title="SmallShardz storage",
        routers=[space.router, objects.router, links.router, internal.router],
        on_startup=startup,
        on_shutdown=shutdown,
    )
