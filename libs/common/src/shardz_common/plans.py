"""The plan catalogue: one source of truth for the provisioner and billing (plans.json)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel


class Plan(BaseModel):
    id: str
    resource_type: Literal["database", "storage"]
    name: str
    price_minor: int
    currency: str
    interval: Literal["month"]
    limits: dict[str, Any]

    @property
    def is_free(self) -> bool:
        return self.price_minor == 0


@cache
def _catalogue() -> dict[str, Plan]:
    raw = json.loads(resources.files("shardz_common").joinpath("plans.json").read_text())
    return {p["id"]: Plan(currency=raw["currency"], **p) for p in raw["items"]}


def get_plan(plan_id: str, resource_type: str) -> Plan | None:
    plan = _catalogue().get(plan_id)
    return plan if plan is not None and plan.resource_type == resource_type else None


def all_plans() -> list[Plan]:
    """Every plan, in catalogue order (GET /v1/billing/plans, billing's invoice lines)."""
    return list(_catalogue().values())


def plan_ids_schema(resource_type: str) -> dict[str, Any]:
    """`json_schema_extra` of a request field naming a plan: the catalogue's ids as its enum
    (the use case still refuses others with a 422 naming the plan)."""
    return {"enum": [p.id for p in _catalogue().values() if p.resource_type == resource_type]}


def database_size_limit(plan_id: str, free_plan_size_bytes: int) -> int:
    """Bytes a database on `plan_id` may hold: the free plan's comes from the platform's
    setting (PLATFORM_FREE_PLAN_DATABASE_SIZE_BYTES), the others from the catalogue."""
    plan = get_plan(plan_id, "database")
    if plan is None or plan.is_free:
        return free_plan_size_bytes
    return int(plan.limits["size_bytes"])
