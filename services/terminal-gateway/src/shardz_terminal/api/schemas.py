from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel


class HistoryItem(BaseModel):
    id: int
    database_id: UUID
    sql: str
    started_at: datetime
    elapsed_ms: float
    row_count: int | None
    sqlstate: str | None


class HistoryPage(BaseModel):
    items: list[HistoryItem]
    next_cursor: str | None
