"""`GET api.<base>/v1/terminal/history`: the user's own statements, newest first."""

from __future__ import annotations

import binascii
from uuid import UUID

from fastapi import APIRouter, Query, Request

from shardz_common.auth import CurrentUser
from shardz_common.db import read_connection
from shardz_common.errors import ValidationFailed
from shardz_terminal.api.schemas import HistoryItem, HistoryPage
from shardz_terminal.services import history

router = APIRouter(prefix="/v1/terminal", tags=["terminal"])


@router.get("/history", response_model=HistoryPage)
async def statement_history(
    request: Request,
    user: CurrentUser,
    database_id: UUID | None = None,
    cursor: str | None = None,
    limit: int = Query(history.PAGE, ge=1, le=200),
) -> HistoryPage:
    after = None
    if cursor:
        try:
            after = history.decode_cursor(cursor)
        except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
            raise ValidationFailed("cursor is not one this route gave", field="cursor") from exc
    async with read_connection(request) as conn:
        rows, next_cursor = await history.page(conn, user.id, database_id, after, limit)
    items = [
        HistoryItem(
            id=r[0],
            database_id=r[1],
            sql=r[2],
            started_at=r[3],
            elapsed_ms=r[4],
            row_count=r[5],
            sqlstate=r[6],
        )
        for r in rows
    ]
    return HistoryPage(items=items, next_cursor=next_cursor)
