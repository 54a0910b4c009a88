from __future__ import annotations

from fastapi import FastAPI

from shardz_billing.api import billing, runs, webhooks
from shardz_billing.config import BillingSettings
from shardz_billing.services.paystack import PaystackClient
from shardz_common.app import create_service_app


def create_app(settings: BillingSettings | None = None) -> FastAPI:
    settings = settings or BillingSettings()

    async def startup(app: FastAPI) -> None:
        app.state.paystack = PaystackClient(
            settings.paystack_base_url, settings.paystack_secret_key, app.state.http
        )

    return create_service_app(
        settings,
        title="SmallShardz billing",
        routers=[billing.router, runs.router, webhooks.router],
        on_startup=startup,
    )
