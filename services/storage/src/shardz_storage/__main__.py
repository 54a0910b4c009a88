"""`python -m shardz_storage migrate|api|worker`."""

from __future__ import annotations

import sys
from pathlib import Path

SERVICE_ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    from shardz_common.cli import run_cli
    from shardz_storage.config import StorageSettings

    settings = StorageSettings()
    run_cli(
        sys.argv[1:],
        settings=settings,
        service_root=SERVICE_ROOT,
        app_factory="shardz_storage.main:create_app",
        worker_spec="shardz_storage.worker:spec",
    )


if __name__ == "__main__":
    main()
