from __future__ import annotations

from shardz_provisioner.db.tables import Cluster, Database
from shardz_provisioner.domain import names
from shardz_provisioner.domain.models import DatabaseOut


def to_out(db: Database, cluster: Cluster) -> DatabaseOut:
    return DatabaseOut(
        id=db.id,
        name=db.name,
        engine=db.engine,
        plan=db.plan,
        status=db.status,
        host=cluster.host,
        port=cluster.port,
        database=db.db_name,
        username=db.role_name,
        uri=names.uri(db.role_name, None, cluster.host, cluster.port, db.db_name),
        created_at=db.created_at,
    )
