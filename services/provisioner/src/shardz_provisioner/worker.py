from __future__ import annotations

from shardz_common.worker import WorkerSpec
from shardz_provisioner.config import ProvisionerSettings
from shardz_provisioner.db.tables import inbox, outbox
from shardz_provisioner.events.handlers import CONSUMERS


def spec(settings: ProvisionerSettings | None = None) -> WorkerSpec:
    return WorkerSpec(
        settings=settings or ProvisionerSettings(), outbox=outbox, inbox=inbox, consumers=CONSUMERS
    )
