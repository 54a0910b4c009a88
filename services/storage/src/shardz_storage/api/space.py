from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from shardz_common.auth import CurrentUser
from shardz_common.db import SessionDep
from shardz_common.openapi import problems
from shardz_storage.api.schemas import PlanChange, SpaceOut
from shardz_storage.deps import SettingsDep
from shardz_storage.services import spaces

router = APIRouter(prefix="/v1/storage", tags=["storage"])


def _out(space: dict[str, Any]) -> SpaceOut:
    return SpaceOut(
        quota_bytes=space["quota_bytes"],
        used_bytes=space["used_bytes"],
        object_count=space["object_count"],
        plan=space["plan"],
        status=space["status"],
    )


@router.get("", response_model=SpaceOut)
async def get_space(session: SessionDep, user: CurrentUser, settings: SettingsDep) -> SpaceOut:
    return _out(await spaces.get(session, settings, user.id))


@router.patch("", response_model=SpaceOut, responses=problems(409))
async def change_plan(
    body: PlanChange, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> SpaceOut:
    return _out(await spaces.change_plan(session, settings, user.id, body.plan))
