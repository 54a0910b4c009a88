"""`python -m shardz_terminal migrate|api|worker`."""

from __future__ import annotations

import sys
from pathlib import Path

SERVICE_ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    from shardz_common.cli import run_cli
    from shardz_terminal.config import TerminalSettings

    settings = TerminalSettings()
    run_cli(
        sys.argv[1:],
        settings=settings,
        service_root=SERVICE_ROOT,
        app_factory="shardz_terminal.main:create_app",
        worker_spec="shardz_terminal.worker:spec",
        # uvicorn refuses bigger frames itself (close 1009) before they are buffered whole
        uvicorn_options={"ws_max_size": settings.max_message_bytes, "ws": "websockets-sansio"},
    )


if __name__ == "__main__":
    main()
