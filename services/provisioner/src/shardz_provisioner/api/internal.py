"""Service-to-service: the terminal gateway opens sessions as the tenant's own role."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.auth import Principal, check_internal_secret
from shardz_common.db import SessionDep
from shardz_common.errors import AccountSuspended, Forbidden, NotFound
from shardz_provisioner.db.tables import Account, Cluster, Move
from shardz_provisioner.deps import RegistryDep, SettingsDep
from shardz_provisioner.domain import names
from shardz_provisioner.domain.models import SessionCredential, SessionCredentialRequest
from shardz_provisioner.services.provisioning import ensure_terminal_login, get_owned

router = APIRouter(prefix="/internal", include_in_schema=False)


async def _moving_from(session: AsyncSession, database_id: UUID) -> str | None:
    """The status a database in a move had: until the switch the record (and so this
    credential) points at the source; after it, at the target. A terminal whose session the
    move ended reconnects through here and lands on whichever copy takes logins."""
    row = await session.execute(
        select(Move.prior_status).where(
            Move.database_id == database_id, Move.state.in_(("queued", "running"))
        )
    )
    return row.scalar_one_or_none()


@router.post("/session-credentials", response_model=SessionCredential)
async def session_credential(
    body: SessionCredentialRequest,
    session: SessionDep,
    registry: RegistryDep,
    settings: SettingsDep,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> SessionCredential:
    check_internal_secret(
        authorization, request.app.state.settings.secrets.provisioner_internal_secret
    )
    db = await get_owned(session, Principal(id=body.user_id), body.database_id)
    account = await session.get(Account, body.user_id)
    if db.status == "suspended" or (account is not None and account.status == "suspended"):
        raise AccountSuspended("the account is suspended")
    if db.status == "moving" and await _moving_from(session, db.id) != "ready":
        raise AccountSuspended("the account is suspended")
    if db.status not in ("ready", "moving") or db.password is None:
        raise NotFound("no such database")
    if db.size_state == "over_grown":  # its logins are off until it shrinks
        raise Forbidden("the database is over its plan's size; it has no logins until it shrinks")
    cluster = await session.get(Cluster, db.cluster)
    assert cluster is not None
    # A platform-owned login that acts as the tenant's role: the tenant may change its own
    # password (ALTER ROLE ... PASSWORD) without breaking the terminal.
    async with registry.admin(cluster.name) as conn:
        password = await ensure_terminal_login(conn, settings, db)
        # where the platform reaches the cluster (inside compose or a cluster network), not
        # the public address users get
        host, port = conn.info.host, conn.info.port
    if host.startswith("/"):
        host, port = cluster.host, cluster.port
    return SessionCredential(
        host=host,
        port=port,
        database=db.db_name,
        username=names.terminal_role_name(db.id),
        password=password,
        role=db.role_name,
    )
