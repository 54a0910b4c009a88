"""Request and response bodies of CONTRACT section 6."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from shardz_common.plans import plan_ids_schema


class SpaceOut(BaseModel):
    quota_bytes: int
    used_bytes: int
    object_count: int
    plan: str
    status: str


class PlanChange(BaseModel):
    plan: str = Field(min_length=1, max_length=40, json_schema_extra=plan_ids_schema("storage"))


class ObjectOut(BaseModel):
    key: str
    size: int
    etag: str
    content_type: str
    updated_at: datetime


class ObjectList(BaseModel):
    items: list[ObjectOut]
    next_cursor: str | None


class PresignRequest(BaseModel):
    key: str = Field(min_length=1)
    expires_in: int = Field(ge=1, le=604_800)


class PresignedLink(BaseModel):
    url: str
    expires_at: datetime
