from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shardz_common.settings import ServiceSettings


class TerminalSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TERMINAL_", extra="ignore")

    service_name: str = "terminal"
    port: int = 8105
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/shardz_terminal"
    # CONTRACT section 10: limits the tenant cannot lift
    statement_timeout_seconds: float = 60.0
    max_sessions_per_user: int = 10
    max_rows: int = 10_000
    max_result_bytes: int = 4_194_304
    idle_timeout_seconds: float = 900.0
    # a browser sends its token as the first message; a silent socket is closed after this
    auth_timeout_seconds: float = 5.0
    max_message_bytes: int = 1_048_576
    # rows libpq hands over at a time (chunked rows mode): memory per batch, not per result
    fetch_batch_rows: int = 500
    # A session row not refreshed for this long belongs to a dead process (session cap).
    session_lease_seconds: float = 30.0
    history_retention_days: int = 30
    history_flush_seconds: float = 0.5
    history_purge_interval_seconds: float = 3600.0
    # Origins a browser may open the terminal from; empty: the dashboard's
    # (PLATFORM_DASHBOARD_ORIGIN, and http(s)://dashboard.<base>[:gateway port]).
    allowed_origins: str = ""

    def origins(self) -> set[str]:
        if self.allowed_origins:
            return {o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()}
        host = f"dashboard.{self.platform.base_domain}"
        port = self.platform.gateway_port
        found = {f"https://{host}", f"http://{host}", self.platform.dashboard_url()}
        if port not in (80, 443):
            found |= {f"http://{host}:{port}", f"https://{host}:{port}"}
        return found
