"""Service-to-service: billing's reconciliation pages through every database that exists or
existed, so a subscription an event missed can be fixed from the source of truth."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel
from sqlalchemy import select

from shardz_common.auth import check_internal_secret
from shardz_common.db import ReadSessionDep
from shardz_provisioner.db.tables import Database

router = APIRouter(prefix="/internal", include_in_schema=False)


class DatabaseRecord(BaseModel):
    id: UUID
    user_id: UUID
    plan: str
    status: str
    created_at: datetime
    # when it stopped existing for its owner (marked for deletion), if it did
    deleted_at: datetime | None
    # when `plan` took effect: its creation, or the last plan change
    plan_since: datetime


class DatabaseRecords(BaseModel):
    items: list[DatabaseRecord]
    next_cursor: str | None


@router.get("/databases", response_model=DatabaseRecords)
async def list_all_databases(
    session: ReadSessionDep,
    request: Request,
    cursor: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    authorization: Annotated[str | None, Header()] = None,
) -> DatabaseRecords:
    check_internal_secret(
        authorization, request.app.state.settings.secrets.provisioner_internal_secret
    )
    query = select(Database).where(Database.status != "provisioning")
    if cursor is not None:
        query = query.where(Database.id > cursor)
    rows = list((await session.execute(query.order_by(Database.id).limit(limit))).scalars())
    items = [
        DatabaseRecord(
            id=db.id,
            user_id=db.user_id,
            plan=db.plan,
            status=db.status,
            created_at=db.created_at,
            deleted_at=db.updated_at if db.status == "deleting" else db.deleted_at,
            plan_since=db.plan_changed_at or db.created_at,
        )
        for db in rows
    ]
    next_cursor = str(rows[-1].id) if len(rows) == limit else None
    return DatabaseRecords(items=items, next_cursor=next_cursor)
