from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_provisioner.config import ProvisionerSettings
from shardz_provisioner.services.clusters import ClusterRegistry


def _registry(request: Request) -> ClusterRegistry:
    registry: ClusterRegistry = request.app.state.registry
    return registry


def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return maker


def _settings(request: Request) -> ProvisionerSettings:
    settings: ProvisionerSettings = request.app.state.settings
    return settings


RegistryDep = Annotated[ClusterRegistry, Depends(_registry)]
SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(_sessions)]
SettingsDep = Annotated[ProvisionerSettings, Depends(_settings)]
