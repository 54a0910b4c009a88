"""Brings the SmallShardz platform up locally: `make dev` and the pytest test stack."""

from shardz_devstack.config import StackConfig
from shardz_devstack.postgres import TenantCluster

__all__ = ["StackConfig", "TenantCluster"]
