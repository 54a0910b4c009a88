from __future__ import annotations

from fastapi import FastAPI

from shardz_common.app import create_service_app
from shardz_provisioner.api import databases
from shardz_provisioner.config import ProvisionerSettings


def create_app(settings: ProvisionerSettings | None = None) -> FastAPI:
    settings = settings or ProvisionerSettings()
    return create_service_app(settings, title="SmallShardz provisioner", routers=[databases.router])
