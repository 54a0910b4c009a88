from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shardz_common.settings import ServiceSettings


class ProvisionerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PROVISIONER_", extra="ignore")

    service_name: str = "provisioner"
    port: int = 8102
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/shardz_provisioner"
    # JSON list of tenant clusters registered (upserted) at start:
    # [{"name", "admin_dsn", "host", "port", "capacity"}]
    tenant_clusters: str = "[]"
    # PROVISIONER_SECRET_KEY (see ServiceSettings) encrypts tenant credentials and admin DSNs.
    # A provisioning intent older than this is a crashed saga: the reconciler rolls it back.
    provisioning_timeout_seconds: float = 120.0
    reconcile_interval_seconds: float = 10.0
    deletion_poll_seconds: float = 1.0
    # how soon a suspension or reactivation reaches the servers' logins
    access_poll_seconds: float = 1.0
    metering_interval_seconds: float = 3600.0
    # how often every database's size is checked against its plan (read-only past it)
    size_check_interval_seconds: float = 60.0
    # most databases are idle: their plans may promise this many times a cluster's tenant
    # connections (max_connections less the reserved slots) before it takes no more
    connection_overcommit: float = 10.0
    # a cluster registered with `disk_bytes` takes no new database once its databases leave
    # less than this share of that disk free (room for them to grow, WAL, vacuum)
    disk_reserve_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    # a tenant transaction idle this long is ended, whatever its session set
    idle_transaction_ceiling_seconds: float = 3600.0
    # a tenant statement running this long is cancelled, whatever its statement_timeout
    statement_ceiling_seconds: float = 3600.0
    # concurrent DDL per cluster from one process; CREATE DATABASE mostly waits on I/O
    admin_pool_size: int = 10
    # connections the terminal gateway's login role may hold on one database
    terminal_connection_limit: int = 10
    # moves between clusters (services/moves.py): the source copy is kept this long after
    # the switch, read-only and without logins, then dropped
    move_grace_seconds: float = 86400.0
    # concurrent moves touching one cluster (as source or target), across all processes
    moves_per_cluster: int = 2
    # a running move whose mover has not reported for this long is rolled back
    move_stale_seconds: float = 60.0
    move_poll_seconds: float = 1.0
    # the initial logical-replication copy may take this long before the move gives up
    move_sync_timeout_seconds: float = 6 * 3600.0
    # pg_dump/pg_restore of PostgreSQL <major> live in <this>/<major>/bin (Debian's layout)
    pg_bin_root: str = "/usr/lib/postgresql"

    # Exports and imports (services/dumps.py, ADR 0011). Dumps live in their own bucket of the
    # platform's object store, apart from users' files (storage's sweeper owns its bucket).
    s3_endpoint: str = "http://127.0.0.1:8333"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_region: str = "us-east-1"
    dumps_bucket: str = "shardz-dumps"
    # origin of export download links: the gateway's API host. Default: http://api.<base>:<port>
    public_url: str | None = None
    # a finished export is kept this long, then removed by the sweeper
    export_retention_seconds: float = 7 * 24 * 3600.0
    # a download link works this long (and never past the export's removal)
    export_link_seconds: float = 3600.0
    # exports one database may start per day (each is a full pg_dump)
    exports_per_day: int = 20
    # largest dump an import takes, streamed or from storage
    import_max_bytes: int = 1024**3
    # a dump or restore running longer than this is stopped and marked failed
    dump_timeout_seconds: float = 3600.0
    # a running job's claim; the worker renews it while it works, so a crashed worker's job
    # is taken over once this has passed
    dump_lease_seconds: float = 60.0
    dump_max_attempts: int = 3
    dump_poll_seconds: float = 1.0
    dump_sweep_interval_seconds: float = 60.0
    # an import body never fully received (the API died mid-upload) is dropped after this
    import_receive_timeout_seconds: float = 3600.0
    # extensions an import may create (the trusted ones of the PostgreSQL contrib package)
    import_extensions: str = (
        "btree_gin,btree_gist,citext,cube,dict_int,fuzzystrmatch,hstore,intarray,isn,lo,"
        "ltree,pgcrypto,pg_trgm,seg,tablefunc,tcn,tsm_system_rows,tsm_system_time,unaccent,"
        "uuid-ossp"
    )
