from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select

from shardz_common.auth import CurrentUser
from shardz_common.db import SessionDep
from shardz_provisioner.db.tables import Database

router = APIRouter(prefix="/v1/databases", tags=["databases"])


class DatabaseOut(BaseModel):
    id: UUID
    name: str
    engine: str
    plan: str
    status: str
    created_at: datetime


class DatabaseList(BaseModel):
    items: list[DatabaseOut]


@router.get("", response_model=DatabaseList)
async def list_databases(session: SessionDep, user: CurrentUser) -> DatabaseList:
    rows = (
        await session.execute(
            select(Database).where(Database.user_id == user.id).order_by(Database.created_at)
        )
    ).scalars()
    return DatabaseList(items=[DatabaseOut.model_validate(r, from_attributes=True) for r in rows])
