"""`python -m shardz_provisioner migrate|api|worker`."""

from __future__ import annotations

import sys
from pathlib import Path

SERVICE_ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    from shardz_common.cli import run_cli
    from shardz_provisioner.config import ProvisionerSettings

    run_cli(
        sys.argv[1:],
        settings=ProvisionerSettings(),
        service_root=SERVICE_ROOT,
        app_factory="shardz_provisioner.main:create_app",
        worker_spec="shardz_provisioner.worker:spec",
    )


if __name__ == "__main__":
    main()
