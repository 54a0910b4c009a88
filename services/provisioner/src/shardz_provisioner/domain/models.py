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


class ClusterOut(BaseModel):
    name: str
    host: str
    port: int
    capacity: int
    status: str
    databases: int
    up: bool


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
