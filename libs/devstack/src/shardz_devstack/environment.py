"""The environment every service process gets: ports, DSNs, URLs and the generated secrets."""

from __future__ import annotations

from collections.abc import Mapping

from shardz_devstack.config import KNOWN_SERVICES, StackConfig
from shardz_devstack.postgres import TenantCluster, clusters_json
from shardz_devstack.rabbit import amqp_url
from shardz_devstack.seaweed import s3_endpoint


def control_database_url(config: StackConfig, service: str) -> str:
    return config.database_dsn(service).replace("postgresql://", "postgresql+psycopg://", 1)


def service_env(
    config: StackConfig,
    secrets: Mapping[str, str],
    clusters: list[TenantCluster],
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """All variables the services read. `overrides` (the caller's environment in dev) wins."""
    env: dict[str, str] = {k: v for k, v in secrets.items() if not k.startswith("DEVSTACK_")}
    env.update(
        {
            "PLATFORM_BASE_DOMAIN": config.base_domain,
            "PLATFORM_GATEWAY_PORT": str(config.gateway_port),
            "PLATFORM_AMQP_URL": amqp_url(config.amqp_host, config.amqp_port, config.amqp_vhost),
            "PROVISIONER_TENANT_CLUSTERS": clusters_json(clusters),
            "STORAGE_S3_ENDPOINT": s3_endpoint(config),
            "STORAGE_S3_REGION": "us-east-1",
            # exports and imports keep dumps in their own bucket of the same store
            "PROVISIONER_S3_ENDPOINT": s3_endpoint(config),
            "PROVISIONER_S3_REGION": "us-east-1",
            "PROVISIONER_S3_ACCESS_KEY": secrets.get("STORAGE_S3_ACCESS_KEY", ""),
            "PROVISIONER_S3_SECRET_KEY": secrets.get("STORAGE_S3_SECRET_KEY", ""),
            # the gateway's internal location that streams download bodies from the store
            "STORAGE_DOWNLOAD_HANDOFF_LOCATION": "/.storage-backend/",
        }
    )
    for service in KNOWN_SERVICES:
        upper = service.upper()
        env[f"{upper}_PORT"] = str(config.port(service))
        env[f"{upper}_DATABASE_URL"] = control_database_url(config, service)
        env[f"PLATFORM_{upper}_URL"] = config.internal_url(service)
    # Paystack sends the payer back to the dashboard's result page after checkout
    port = "" if config.gateway_port == 80 else f":{config.gateway_port}"
    env["BILLING_PAYSTACK_CALLBACK_URL"] = (
        f"http://dashboard.{config.base_domain}{port}/billing/result"
    )
    env.update(config.settings)
    if "billing" in config.services and "BILLING_PAYSTACK_BASE_URL" not in (overrides or {}):
        # no Paystack given: the local stand-in (started by `commands`) plays it
        env["BILLING_PAYSTACK_BASE_URL"] = config.paystack_standin_url
        env["BILLING_PAYSTACK_SECRET_KEY"] = secrets.get("DEVSTACK_PAYSTACK_SECRET_KEY", "")
    if overrides:
        env.update({k: v for k, v in overrides.items() if k in env})
    if env.get("BILLING_PAYSTACK_BASE_URL") == config.paystack_standin_url:
        env["PAYSTACK_STANDIN_SECRET_KEY"] = env["BILLING_PAYSTACK_SECRET_KEY"]
    return env
