"""Request and response shapes of CONTRACT section 5 and the cluster admin API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from shardz_common.plans import plan_ids_schema

LABEL = r"^[a-z][a-z0-9-]{0,62}$"


class DatabaseCreate(BaseModel):
    name: str = Field(pattern=LABEL, max_length=63)
    engine: Literal["postgres"] = "postgres"
    plan: str = Field(default="free", max_length=40, json_schema_extra=plan_ids_schema("database"))


class DatabasePlanChange(BaseModel):
    plan: str = Field(min_length=1, max_length=40, json_schema_extra=plan_ids_schema("database"))


class DatabaseOut(BaseModel):
    id: UUID
    name: str
    engine: str
    plan: str
    status: str
    size_limit_bytes: int
    host: str
    port: int
    database: str
    username: str
    uri: str
    created_at: datetime


class DatabaseWithPassword(DatabaseOut):
    password: str


class DatabaseList(BaseModel):
    items: list[DatabaseOut]


class Usage(BaseModel):
    size_bytes: int
    connections: int
    measured_at: datetime


class UsageHistory(BaseModel):
    items: list[Usage]


class ClusterIn(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    admin_dsn: str = Field(min_length=1, max_length=2000)
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    capacity: int = Field(default=500, ge=1, le=100_000)
    # the disk its data may fill: placement stops sending databases once their sizes leave
    # less than PROVISIONER_DISK_RESERVE_FRACTION of it free (unset: disk not watched)
    disk_bytes: int | None = Field(default=None, ge=1)


class ClusterOut(BaseModel):
    name: str
    host: str
    port: int
    capacity: int
    status: str
    databases: int
    up: bool
    disk_bytes: int | None = None
    used_bytes: int | None = None


class ClusterDrained(ClusterOut):
    # with ?move=true: the moves queued off the cluster (GET /v1/databases/{id}/moves)
    moves_queued: int = 0


class ClusterList(BaseModel):
    items: list[ClusterOut]


class SessionCredentialRequest(BaseModel):
    database_id: UUID
    user_id: UUID


class SessionCredential(BaseModel):
    """The terminal's login (a platform-owned role) and the tenant role it acts as."""

    host: str
    port: int
    database: str
    username: str
    password: str
    role: str


class Orphans(BaseModel):
    cluster: str
    roles: list[str]
    databases: list[str]


class MoveIn(BaseModel):
    cluster: str = Field(min_length=1, max_length=63)


class MoveOut(BaseModel):
    """A move as administrators see it: `mode` is `dump` (writes frozen for the whole copy)
    or `logical` (frozen only while the last changes arrive); `freeze_seconds` once done."""

    id: UUID
    database_id: UUID
    from_cluster: str
    to_cluster: str
    state: Literal["queued", "running", "switched", "done", "failed"]
    mode: str | None
    step: str | None
    error: str | None
    writes_frozen: bool
    freeze_seconds: float | None
    created_at: datetime
    drop_after: datetime | None


class MoveList(BaseModel):
    items: list[MoveOut]
