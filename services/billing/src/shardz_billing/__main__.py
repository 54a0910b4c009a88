"""`python -m shardz_billing migrate|api|worker`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shardz_billing.config import BillingSettings

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
    if sys.argv[1:] == ["migrate"]:
        _declare_queues(settings)


def _declare_queues(settings: BillingSettings) -> None:
    """Queues exist from migrate on: events sent before the first worker runs are kept."""
    from shardz_billing.events.handlers import consumers
    from shardz_common.consumers import declare_queues

    p = settings.platform
    asyncio.run(
        declare_queues(
            consumers(),
            amqp_url=p.amqp_url,
            exchange=p.events_exchange,
            dead_letter_exchange=p.dead_letter_exchange,
        )
    )


if __name__ == "__main__":
    main()
