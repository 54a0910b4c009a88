from __future__ import annotations

from fastapi import APIRouter

from shardz_billing.api.schemas import RunRequest, RunResult
from shardz_billing.deps import SettingsDep
from shardz_billing.services.runs import daily_run
from shardz_common.auth import AdminUser
from shardz_common.db import SessionDep
from shardz_common.openapi import problems

router = APIRouter(prefix="/v1/billing", tags=["billing"])


@router.post("/runs", response_model=RunResult, responses=problems(409))
async def run_billing(
    body: RunRequest, session: SessionDep, settings: SettingsDep, _: AdminUser
) -> RunResult:
    outcome = await daily_run(session, settings, body.as_of, trigger="admin")
    return RunResult(
        invoices_created=outcome.invoices_created,
        invoices_overdue=outcome.invoices_overdue,
        accounts_suspended=outcome.accounts_suspended,
    )
