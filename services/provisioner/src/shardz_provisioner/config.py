from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shardz_common.settings import ServiceSettings


class ProvisionerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PROVISIONER_", extra="ignore")

    service_name: str = "provisioner"
    port: int = 8102
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/shardz_provisioner"
    # JSON list of tenant clusters registered at start (see the provisioner issue).
    tenant_clusters: str = "[]"
