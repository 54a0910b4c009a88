"""`python -m shardz_billing migrate|api|worker`."""

from __future__ import annotations

import sys
from pathlib import Path

SERVICE_ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    from shardz_billing.config import BillingSettings
    from shardz_common.cli import run_cli

    settings = BillingSettings()
    run_cli(
        sys.argv[1:],
        settings=settings,
        service_root=SERVICE_ROOT,
        app_factory="shardz_billing.main:create_app",
        worker_spec="shardz_billing.worker:spec",
    )


if __name__ == "__main__":
    main()
