from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shardz_common.settings import ServiceSettings


class BillingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore")

    service_name: str = "billing"
    port: int = 8104
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/shardz_billing"
    # CONTRACT section 10
    paystack_base_url: str = "https://api.paystack.co"
    paystack_secret_key: str | None = None
    grace_days: int = 7
    # an invoice is due this many days after it is issued (the contract caps it at 14)
    due_days: int = 14
    # where Paystack sends the payer after checkout (optional)
    paystack_callback_url: str | None = None
    # The daily run starts at this UTC time (HH:MM) for the day that just ended.
    run_at_utc: str = "00:05"
    scheduler_poll_seconds: float = 60.0
    reconcile_interval_seconds: float = 300.0
    reconcile_page_size: int = 500
    # open invoices past due + grace are marked overdue (and accounts suspended) this often,
    # besides the daily run
    overdue_interval_seconds: float = 900.0
    settle_interval_seconds: float = 2.0
    # seconds a run waits for a concurrent run before answering 409
    run_lock_timeout_seconds: float = 60.0
    # Test-only fault injection: exit the process at a step of the run ("run_after_lines").
    fault_injection: str | None = None
