"""The tenant session credential, fresh from the provisioner's internal route (never cached,
never sent to the client)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import httpx

from shardz_common.errors import AccountSuspended, NotFound, Unavailable


@dataclass(frozen=True)
class Credential:
    host: str
    port: int
    database: str
    username: str
    password: str
    role: str  # the tenant's role: the session SETs ROLE to it


async def fetch(
    client: httpx.AsyncClient,
    provisioner_url: str,
    secret: str | None,
    user_id: UUID,
    database_id: UUID,
) -> Credential:
    try:
        resp = await client.post(
            f"{provisioner_url}/internal/session-credentials",
            json={"database_id": str(database_id), "user_id": str(user_id)},
            headers={"Authorization": f"Bearer {secret or ''}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise Unavailable("the database service is not reachable") from exc
    if resp.status_code == 404:
        raise NotFound("no such database")
    if resp.status_code == 403:
        raise AccountSuspended(resp.json().get("detail", "the account is suspended"))
    if resp.status_code != 200:
        raise Unavailable(f"the database service answered {resp.status_code}")
    data = resp.json()
    return Credential(
        host=data["host"],
        port=int(data["port"]),
        database=data["database"],
        username=data["username"],
        password=data["password"],
        role=data.get("role") or data["username"],
    )
