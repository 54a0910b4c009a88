"""Settings shared by every service. Each service subclasses ServiceSettings with its prefix."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PlatformSettings(BaseSettings):
    """Platform-wide settings (CONTRACT section 10), read from PLATFORM_* variables."""

    model_config = SettingsConfigDict(env_prefix="PLATFORM_", extra="ignore")

    base_domain: str = "localhost"
    gateway_port: int = 8080
    # requests per minute one address may send to /v1/auth/*; enforced by the gateway (nginx
    # limit_req), declared here so every deployment's configuration is checked in one place
    auth_rate_limit_per_minute: int = Field(default=120, ge=1)
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    events_exchange: str = "platform.events"
    dead_letter_exchange: str = "platform.dlx"
    free_plan_databases: int = 3
    free_plan_storage_bytes: int = 1_073_741_824
    # the free database plan's size; past it a database turns read-only (CONTRACT section 10)
    free_plan_database_size_bytes: int = 536_870_912
    identity_url: str = "http://127.0.0.1:8101"
    provisioner_url: str = "http://127.0.0.1:8102"
    terminal_url: str = "http://127.0.0.1:8105"
    billing_url: str = "http://127.0.0.1:8104"
    storage_url: str = "http://127.0.0.1:8103"
    jwt_issuer: str = "smallshardz-identity"
    jwt_audience: str = "smallshardz"
    otlp_endpoint: str | None = None
    # Addresses whose X-Forwarded-For is believed (the gateway); e.g. a pod CIDR on Kubernetes.
    trusted_proxies: str = "127.0.0.1"
    log_level: str = "INFO"
    # The web dashboard's origin: the only one CORS admits on the APIs and the only one whose
    # cookie-mode auth calls identity accepts; empty: http://dashboard.<base>:<gateway port>.
    dashboard_origin: str = ""

    def dashboard_url(self) -> str:
        if self.dashboard_origin:
            return self.dashboard_origin.rstrip("/")
        port = "" if self.gateway_port == 80 else f":{self.gateway_port}"
        return f"http://dashboard.{self.base_domain}{port}"


class InternalSecrets(BaseSettings):
    """Per-service secrets that authenticate /internal calls (callee verifies its own)."""

    model_config = SettingsConfigDict(extra="ignore")

    # No defaults: a route guarded by an unset secret refuses everyone (make dev generates them).
    identity_internal_secret: str | None = None
    provisioner_internal_secret: str | None = None
    storage_internal_secret: str | None = None


class ServiceSettings(BaseSettings):
    """Base for a service's own settings; subclasses set env_prefix, e.g. IDENTITY_."""

    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = "service"
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/shardz"
    host: str = "127.0.0.1"
    port: int = 8100
    db_pool_size: int = 10
    db_max_overflow: int = 10
    # Seconds an API-key introspection answer is cached; keeps revocation under 2 s.
    api_key_cache_seconds: float = 1.0
    # Fernet key for this service's secrets at rest (<PREFIX>SECRET_KEY); required by the
    # services that keep any (make dev generates one).
    secret_key: str | None = None
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    secrets: InternalSecrets = Field(default_factory=InternalSecrets)

    def fernet_key(self) -> bytes:
        if not self.secret_key:
            prefix = self.model_config.get("env_prefix", "")
            raise RuntimeError(f"{prefix}SECRET_KEY must be set to a Fernet key")
        return self.secret_key.encode()
