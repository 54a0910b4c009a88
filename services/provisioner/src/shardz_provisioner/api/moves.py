"""Administrators move a database to another cluster (CONTRACT section 5)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request

from shardz_common.auth import AdminUser
from shardz_common.db import SessionDep
from shardz_common.openapi import problems
from shardz_provisioner.domain.models import MoveIn, MoveList, MoveOut
from shardz_provisioner.services import moves

router = APIRouter(prefix="/v1/databases", tags=["moves"])


@router.post(
    "/{database_id}/move", status_code=202, response_model=MoveOut, responses=problems(409)
)
async def move_database(
    database_id: UUID, body: MoveIn, session: SessionDep, admin: AdminUser, request: Request
) -> MoveOut:
    """202: `status` is `moving` until the database answers on the target cluster with the
    same credentials; progress under GET /v1/databases/{id}/moves."""
    out = await moves.request(session, database_id, body.cluster)
    await session.commit()  # the runner claims the committed intent
    await request.app.state.moves.kick()
    return out


@router.get("/{database_id}/moves", response_model=MoveList)
async def list_moves(database_id: UUID, session: SessionDep, admin: AdminUser) -> MoveList:
    return MoveList(items=await moves.history(session, database_id))
