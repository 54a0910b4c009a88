"""PostgreSQL client programs (pg_dump, pg_restore) matching a tenant cluster's version."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from psycopg import AsyncConnection


class ToolMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Login:
    """How a job reaches a tenant database: the platform-owned terminal login, which acts as
    the tenant's role after SET ROLE (see provisioning.ensure_terminal_login)."""

    host: str
    port: int
    database: str
    user: str
    password: str
    role: str
    major: int

    def environment(self) -> dict[str, str]:
        """The whole environment of a client program: the password travels here, never on
        its command line, and none of the worker's own secrets are passed on."""
        return {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGDATABASE": self.database,
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGAPPNAME": "shardz-dumps",
            "PGCONNECT_TIMEOUT": "10",
        }


async def server_major(conn: AsyncConnection) -> int:
    cur = await conn.execute("SELECT pg_catalog.current_setting('server_version_num')::int")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]) // 10000


def program(pg_root: str, major: int, name: str) -> str:
    """`<pg_root>/<major>/bin/<name>`: a dump made or read by another major version's
    tools is refused or subtly wrong, so there is no fallback to whatever is on PATH."""
    path = Path(pg_root) / str(major) / "bin" / name
    if not os.access(path, os.X_OK):
        raise ToolMissing(f"{name} for PostgreSQL {major} is not installed on the worker's host")
    return str(path)
