from __future__ import annotations

from shardz_common.plans import database_size_limit
from shardz_provisioner.db.tables import Cluster, Database
from shardz_provisioner.domain import names
from shardz_provisioner.domain.models import DatabaseOut


def shown_status(db: Database) -> str:
    """CONTRACT section 5: a ready database over its size is `read_only`; one that lost its
    logins for growing on regardless is `suspended`."""
    if db.status == "ready" and db.size_state == "read_only":
        return "read_only"
    if db.status == "ready" and db.size_state == "over_grown":
        return "suspended"
    return db.status


def to_out(db: Database, cluster: Cluster, free_plan_size: int) -> DatabaseOut:
    return DatabaseOut(
        id=db.id,
        name=db.name,
        engine=db.engine,
        plan=db.plan,
        status=shown_status(db),
        size_limit_bytes=database_size_limit(db.plan, free_plan_size),
        host=cluster.host,
        port=cluster.port,
        database=db.db_name,
        username=db.role_name,
        uri=names.uri(db.role_name, None, cluster.host, cluster.port, db.db_name),
        created_at=db.created_at,
    )
