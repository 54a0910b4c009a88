from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shardz_common.settings import ServiceSettings

MIB = 1024 * 1024


class StorageSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="STORAGE_", extra="ignore")

    service_name: str = "storage"
    port: int = 8103
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/shardz_storage"
    # Uploads hold a connection only for a statement at each end (the bytes flow without
    # one), so a few per process go a long way; the control-plane server's connections are
    # shared by every service replica.
    db_pool_size: int = 4
    db_max_overflow: int = 4
    # The S3-compatible object store (SeaweedFS locally, MinIO or any S3 elsewhere).
    s3_endpoint: str = "http://127.0.0.1:8333"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_region: str = "us-east-1"
    bucket: str = "shardz-objects"
    # STORAGE_SECRET_KEY (see ServiceSettings) signs presigned download links.
    # Where presigned links point: the gateway's public API host. Default: http://api.<base>:<port>
    public_url: str | None = None
    # Bodies go to the store in parts of this size (more for objects that need > 9,000 parts).
    part_size_bytes: int = 8 * MIB
    # Parts in flight per upload while the next one is read from the client (each holds up to
    # a part of memory until the store has it).
    parallel_parts: int = 1
    # A body with a Content-Length up to this is read whole, stored, and then checked against
    # the quota and indexed in one transaction (one database round trip instead of two).
    whole_body_max_bytes: int = 1 * MIB
    # An upload without Content-Length reserves quota in steps of this size.
    reservation_step_bytes: int = 8 * MIB
    # A reservation not refreshed for this long belongs to a dead upload: the sweeper frees it.
    reservation_ttl_seconds: float = 60.0
    # Replaced or deleted objects stay this long in the store, so downloads under way finish.
    delete_grace_seconds: float = 5.0
    sweep_interval_seconds: float = 1.0
    # Store objects and multipart uploads that no row owns, older than the grace, are removed.
    orphan_scan_interval_seconds: float = 300.0
    orphan_grace_seconds: float = 600.0
    # storage.usage.reported goes out at most this long after a change (coalesced per user).
    usage_report_interval_seconds: float = 10.0
    s3_timeout_seconds: float = 60.0
    # Where the gateway fetches object bytes itself: an `internal` nginx location that proxies
    # to the store (deploy/gateway). Set, a download is authorised and answered here (headers,
    # 304, 416) and its body handed to the gateway with X-Accel-Redirect; unset (an Ingress
    # without that location), the bytes stream through this process.
    download_handoff_location: str | None = None
