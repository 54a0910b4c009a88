from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_billing.config import BillingSettings
from shardz_billing.services.paystack import PaystackClient


def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return maker


def _settings(request: Request) -> BillingSettings:
    settings: BillingSettings = request.app.state.settings
    return settings


def _paystack(request: Request) -> PaystackClient:
    client: PaystackClient = request.app.state.paystack
    return client


SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(_sessions)]
SettingsDep = Annotated[BillingSettings, Depends(_settings)]
PaystackDep = Annotated[PaystackClient, Depends(_paystack)]
