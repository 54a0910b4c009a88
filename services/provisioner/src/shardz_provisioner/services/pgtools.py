"""PostgreSQL's client programs (pg_dump, pg_restore) of the tenant cluster's major version:
between two clusters for a move, the way an operator would pipe them, and as a tenant for its
exports and imports; always with argument lists (never a shell string) and the password in
the environment (never on a command line, where `ps` shows it to every local user)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import structlog
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict

log = structlog.get_logger(__name__)
STDERR_KEPT = 4000
NOT_DUMPED = ["--no-publications", "--no-subscriptions"]


class ToolFailed(Exception):
    """pg_dump or pg_restore exited non-zero; the message names the tool, never its SQL."""


@dataclass(frozen=True)
class Endpoint:
    """Where a tool connects: a cluster's superuser login, and one database on it."""

    host: str
    port: str
    user: str
    password: str
    dbname: str
    sslmode: str | None = None

    @classmethod
    def from_dsn(cls, dsn: str, dbname: str) -> Endpoint:
        parts = conninfo_to_dict(dsn)
        return cls(
            host=str(parts.get("host") or "127.0.0.1"),
            port=str(parts.get("port") or "5432"),
            user=str(parts.get("user") or "postgres"),
            password=str(parts.get("password") or ""),
            dbname=dbname,
            sslmode=str(parts["sslmode"]) if parts.get("sslmode") else None,
        )

    def args(self) -> list[str]:
        return ["-h", self.host, "-p", self.port, "-U", self.user, "-d", self.dbname]

    def env(self) -> dict[str, str]:
        """A minimal environment: the tools get nothing of ours but the password."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
        env["PGPASSWORD"] = self.password
        env["PGCONNECT_TIMEOUT"] = "10"
        env["PGAPPNAME"] = "shardz-move"
        if self.sslmode:
            env["PGSSLMODE"] = self.sslmode
        return env


def bindir(root: str, major: int) -> Path:
    """The client tools of PostgreSQL `major` (Debian's /usr/lib/postgresql/<major>/bin)."""
    path = Path(root) / str(major) / "bin"
    if not (path / "pg_dump").exists() or not (path / "pg_restore").exists():
        raise ToolFailed(f"pg_dump/pg_restore of PostgreSQL {major} are not installed")
    return path


async def copy(
    tools: Path,
    source: Endpoint,
    target: Endpoint,
    owner: str,
    *,
    schema_only: bool = False,
) -> None:
    """`pg_dump -Fc | pg_restore` through a kernel pipe. The restore runs as the tenant's
    role (`--role`): a tenant's functions met on the way (a CHECK constraint, an index
    expression) run with its rights, never a superuser's. One transaction: a failed restore
    leaves an empty database."""
    # publications are the move's own (a tenant has no use for one: it cannot replicate);
    # no compression: the pipe is local, and zlib would be the slowest part
    dump = [str(tools / "pg_dump"), "-Fc", "-Z0", *NOT_DUMPED, *source.args()]
    restore = [
        str(tools / "pg_restore"),
        "--no-owner",
        f"--role={owner}",
        "--single-transaction",
        "--exit-on-error",
        *target.args(),
    ]
    if schema_only:
        dump.append("--schema-only")
    read_end, write_end = os.pipe()
    try:
        dumper = await asyncio.create_subprocess_exec(
            *dump, stdout=write_end, stderr=asyncio.subprocess.PIPE, env=source.env()
        )
        restorer = await asyncio.create_subprocess_exec(
            *restore,
            stdin=read_end,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=target.env(),
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    try:
        (_, dump_err), (_, restore_err) = await asyncio.gather(
            dumper.communicate(), restorer.communicate()
        )
    except BaseException:
        for proc in (dumper, restorer):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        raise
    for name, proc, err in (("pg_dump", dumper, dump_err), ("pg_restore", restorer, restore_err)):
        if proc.returncode != 0:
            log.error(
                "move copy failed", tool=name, code=proc.returncode,
                stderr=err.decode(errors="replace")[-STDERR_KEPT:],
            )  # fmt: skip
            raise ToolFailed(f"{name} exited with {proc.returncode}")


async def schema_fingerprint(tools: Path, source: Endpoint) -> str:
    """A digest of the database's schema (plain `pg_dump --schema-only`): two equal digests
    mean no table, column or type changed in between."""
    proc = await asyncio.create_subprocess_exec(
        str(tools / "pg_dump"),
        "--schema-only",
        *NOT_DUMPED,
        *source.args(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=source.env(),
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        log.error("schema dump failed", stderr=err.decode(errors="replace")[-STDERR_KEPT:])
        raise ToolFailed(f"pg_dump --schema-only exited with {proc.returncode}")
    # plain dumps of current releases open and close with `\restrict KEY` lines whose key is
    # random on each run (a defence for psql restores): not part of the schema
    kept = [
        line for line in out.splitlines() if not line.startswith((b"\\restrict", b"\\unrestrict"))
    ]
    return hashlib.sha256(b"\n".join(kept)).hexdigest()


# ---- exports and imports: the tenant's own login ------------------------------------------


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
