"""Request and response shapes of exports and imports (CONTRACT section 5)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

JobStatus = Literal["queued", "running", "done", "failed"]


class JobStarted(BaseModel):
    id: UUID
    status: JobStatus


class ExportOut(BaseModel):
    id: UUID
    status: JobStatus
    size_bytes: int | None
    # once done, until the export is removed: a link through the gateway, no token needed
    download_url: str | None
    # when the export is removed (and every link to it stops working)
    expires_at: datetime | None
    download_url_expires_at: datetime | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class ImportFromObject(BaseModel):
    object_key: str = Field(min_length=1, max_length=1024)


class RefusedObject(BaseModel):
    object: str
    reason: str


class ImportOut(BaseModel):
    id: UUID
    status: JobStatus
    refused: list[RefusedObject]
    # every refusal, also those past the first 200 listed in `refused`
    refused_count: int
    # statements applied so far (rows of a table's COPY count as one)
    applied: int | None
    format: Literal["custom", "plain"] | None
    size_bytes: int | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
