from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shardz_common.settings import ServiceSettings


class IdentitySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IDENTITY_", extra="ignore")

    service_name: str = "identity"
    port: int = 8101
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/shardz_identity"
    # IDENTITY_SECRET_KEY (see ServiceSettings) encrypts the signing keys at rest.
    bootstrap_admin_email: str | None = None
    bootstrap_admin_password: str | None = None
    access_token_seconds: int = 900
    refresh_token_days: int = 30
    # A refresh family ends this long after its sign-in, however often it is rotated.
    refresh_family_max_days: int = 90
    api_keys_max_per_user: int = 50
    signing_key_overlap_seconds: int = 86_400
    login_window_seconds: int = 900
    # For one account from one address (so a stranger cannot lock the owner out), from one
    # address over all accounts, and a higher ceiling for one account from anywhere.
    login_max_failures_per_account: int = 5
    login_max_failures_per_address: int = 50
    login_max_failures_per_account_all_addresses: int = 100
    signup_max_per_address_per_hour: int = 20
    oauth_state_seconds: int = 600
    # Where OAuth providers send the browser back: the public API host.
    public_url: str = "http://api.localhost:8080"
    github_client_id: str | None = None
    github_client_secret: str | None = None
    github_authorize_url: str = "https://github.com/login/oauth/authorize"
    github_token_url: str = "https://github.com/login/oauth/access_token"
    github_api_url: str = "https://api.github.com"
    google_client_id: str | None = None
    google_client_secret: str | None = None
    google_discovery_url: str = "https://accounts.google.com/.well-known/openid-configuration"
