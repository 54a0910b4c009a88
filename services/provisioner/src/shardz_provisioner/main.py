from __future__ import annotations

import httpx
from cryptography.fernet import Fernet
from fastapi import FastAPI

from shardz_common.app import create_service_app
from shardz_provisioner.api import clusters, databases, dumps, internal, internal_databases, moves
from shardz_provisioner.config import ProvisionerSettings
from shardz_provisioner.services.clusters import ClusterRegistry
from shardz_provisioner.services.dumpstore import DumpStore
from shardz_provisioner.services.moves import MoveRunner


def create_app(settings: ProvisionerSettings | None = None) -> FastAPI:
    settings = settings or ProvisionerSettings()
    fernet = Fernet(settings.fernet_key())

    async def startup(app: FastAPI) -> None:
        registry = ClusterRegistry(fernet, settings.admin_pool_size, app.state.sessionmaker)
        app.state.registry = registry
        app.state.dump_store = DumpStore(settings)
        # storage's internal API and the dumps bucket (export downloads stream through here)
        app.state.http = httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=3.0))
        async with app.state.sessionmaker() as s, s.begin():
            await registry.register_from_settings(s, settings.tenant_clusters)
            await registry.load(s)
        # moves asked for here start here; the worker picks up the rest (services/moves.py)
        app.state.moves = MoveRunner(app.state.sessionmaker, registry, settings)

    async def shutdown(app: FastAPI) -> None:
        await app.state.moves.close()
        await app.state.registry.close()
        await app.state.http.aclose()

    return create_service_app(
        settings,
        title="SmallShardz provisioner",
        routers=[
            databases.router,
            moves.router,
            dumps.router,
            clusters.router,
            internal.router,
            internal_databases.router,
        ],
        on_startup=startup,
        on_shutdown=shutdown,
    )
