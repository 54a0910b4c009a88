"""Idempotent DDL on a tenant cluster, composed with psycopg.sql (never string-pasted).

Every function takes an autocommit admin connection whose search_path is pinned to
pg_catalog, and schema-qualifies catalog objects anyway."""

from __future__ import annotations

import structlog
from psycopg import AsyncConnection, errors, sql

from shardz_provisioner.domain.names import DB_PREFIX, ROLE_PREFIX, TERMINAL_ROLE_PREFIX

log = structlog.get_logger(__name__)

# INHERIT stays: the owner acts through the implicit pg_database_owner (owner of `public`).
ROLE_FLAGS = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
SESSION_DEFAULTS = {"idle_in_transaction_session_timeout": "10min", "statement_timeout": "30min"}


async def _exists(conn: AsyncConnection, query: str, name: str) -> bool:
    cur = await conn.execute(query, (name,))
    return await cur.fetchone() is not None


async def create_role(
    conn: AsyncConnection, role: str, verifier: str, connection_limit: int
) -> None:
    if await _exists(conn, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", role):
        verb = sql.SQL(
            "ALTER ROLE {} WITH LOGIN " + ROLE_FLAGS + " CONNECTION LIMIT {} PASSWORD {}"
        )
    else:
        verb = sql.SQL(
            "CREATE ROLE {} WITH LOGIN " + ROLE_FLAGS + " CONNECTION LIMIT {} PASSWORD {}"
        )
    await conn.execute(
        verb.format(sql.Identifier(role), sql.Literal(connection_limit), sql.Literal(verifier))
    )
    # Defaults for the role's sessions, so a forgotten transaction or a runaway query does not
    # hold locks and bloat for ever. A tenant may SET them otherwise in a session; the ceiling
    # it cannot lift is `end_idle_transactions`, run by the worker.
    for name, value in SESSION_DEFAULTS.items():
        await conn.execute(
            sql.SQL("ALTER ROLE {} SET {} = {}").format(
                sql.Identifier(role), sql.Identifier(name), sql.Literal(value)
            )
        )


async def connection_state(conn: AsyncConnection) -> tuple[int, int]:
    """(slots outside the superuser-reserved ones, client connections open now): tenants
    are refused once the second reaches the first (the platform's own connections count)."""
    cur = await conn.execute(
        "SELECT pg_catalog.current_setting('max_connections')::int"
        " - pg_catalog.current_setting('superuser_reserved_connections')::int,"
        " (SELECT count(*) FROM pg_catalog.pg_stat_activity"
        "  WHERE backend_type = 'client backend')"
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def cancel_long_statements(conn: AsyncConnection, older_than_seconds: float) -> int:
    """Cancel tenant statements running for longer than the ceiling (the session goes on)."""
    cur = await conn.execute(
        "SELECT count(pg_catalog.pg_cancel_backend(pid)) FROM pg_catalog.pg_stat_activity"
        " WHERE usename LIKE %s AND state = 'active'"
        " AND query_start < pg_catalog.now() - pg_catalog.make_interval(secs => %s)",
        (ROLE_PREFIX + "%", older_than_seconds),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def end_idle_transactions(conn: AsyncConnection, older_than_seconds: float) -> int:
    """End tenant sessions idle inside a transaction for longer than the ceiling."""
    cur = await conn.execute(
        "SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity"
        " WHERE usename LIKE %s AND state LIKE 'idle in transaction%%'"
        " AND state_change < pg_catalog.now() - pg_catalog.make_interval(secs => %s)",
        (ROLE_PREFIX + "%", older_than_seconds),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def create_database(conn: AsyncConnection, db: str, role: str) -> None:
    if not await _exists(conn, "SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", db):
        await conn.execute(
            sql.SQL("CREATE DATABASE {} WITH OWNER {} TEMPLATE template0 ENCODING 'UTF8'").format(
                sql.Identifier(db), sql.Identifier(role)
            )
        )
    # Only the owner may connect; PUBLIC loses CONNECT and TEMPORARY.
    await conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db)))


async def ensure_terminal_login(
    conn: AsyncConnection, db: str, tenant_role: str, login_role: str, verifier: str, limit: int
) -> None:
    """The terminal's login role for `db`: LOGIN, NOINHERIT (on its own it can do nothing),
    a member of the tenant's role (the terminal SETs ROLE to it), CONNECT on the database.
    Converges: a tenant that revoked the membership or CONNECT (its database, its role) gets
    them back on the next terminal session, and databases older than this role get one."""
    state = await conn.execute(
        "SELECT r.rolcanlogin,"
        " pg_catalog.pg_has_role(r.oid, t.oid, 'MEMBER'),"
        " pg_catalog.has_database_privilege(r.oid, d.oid, 'CONNECT')"
        " FROM pg_catalog.pg_roles r, pg_catalog.pg_roles t, pg_catalog.pg_database d"
        " WHERE r.rolname = %s AND t.rolname = %s AND d.datname = %s",
        (login_role, tenant_role, db),
    )
    row = await state.fetchone()
    if row is not None and all(row):
        return
    login = sql.Identifier(login_role)
    async with conn.transaction():
        # concurrent first sessions of one database: one creates, the others find it
        await conn.execute(
            "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(%s))", (login_role,)
        )
        if not await _exists(
            conn, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", login_role
        ):
            await conn.execute(
                sql.SQL(
                    "CREATE ROLE {} WITH LOGIN NOINHERIT " + ROLE_FLAGS + " CONNECTION LIMIT {}"
                    " PASSWORD {}"
                ).format(login, sql.Literal(limit), sql.Literal(verifier))
            )
        else:
            await conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN").format(login))
        await conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(tenant_role), login))
        await conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(db), login)
        )


async def disable_terminal_login(conn: AsyncConnection, login_role: str) -> None:
    """No new terminal sessions, and the open ones end (suspension)."""
    if await _exists(conn, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", login_role):
        await set_login(conn, login_role, False)
        await terminate_sessions(conn, login_role)


async def set_password(conn: AsyncConnection, role: str, verifier: str) -> None:
    await conn.execute(
        sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(verifier)
        )
    )


async def set_login(conn: AsyncConnection, role: str, login: bool) -> None:
    flag = sql.SQL("LOGIN" if login else "NOLOGIN")
    await conn.execute(sql.SQL("ALTER ROLE {} WITH {}").format(sql.Identifier(role), flag))


async def set_read_only(conn: AsyncConnection, db: str, role: str, read_only: bool) -> None:
    """Writes fail (SQLSTATE 25006) in new sessions of the database, whoever logs in."""
    for target, name in (("DATABASE", db), ("ROLE", role)):
        verb = (
            "SET default_transaction_read_only = on"
            if read_only
            else ("RESET default_transaction_read_only")
        )
        await conn.execute(
            sql.SQL("ALTER {} {} " + verb).format(sql.SQL(target), sql.Identifier(name))
        )


async def terminate_sessions(conn: AsyncConnection, role: str) -> None:
    await conn.execute(
        "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
        " WHERE usename = %s",
        (role,),
    )


async def drop(conn: AsyncConnection, db: str, role: str, terminal_role: str | None = None) -> None:
    """Drop a tenant database and its role, whatever the tenants did to get in the way.

    The owner may flag its database `IS_TEMPLATE` (DROP DATABASE refuses templates), and any
    tenant may grant privileges to another tenant's role (DROP ROLE refuses a role that holds
    privileges). Either would fail every deletion retry and stall the queue behind it."""
    if terminal_role is not None:
        await disable_terminal_login(conn, terminal_role)
    role_exists = await _exists(conn, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", role)
    if role_exists:  # no new sessions to flip the flag back; end the open ones
        await set_login(conn, role, False)
        await terminate_sessions(conn, role)
    if await _exists(conn, "SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", db):
        await conn.execute(
            sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(sql.Identifier(db))
        )
        await conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db))
        )
    if terminal_role is not None:
        await _drop_role(conn, terminal_role)
    if role_exists:
        await _drop_role(conn, role)


async def _drop_role(conn: AsyncConnection, role: str) -> None:
    if not await _exists(conn, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", role):
        return
    # Run in the admin's own database: revokes what others granted this role on shared
    # objects (e.g. CONNECT on their databases); the role owns nothing here.
    await conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    try:
        await conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    except errors.DependentObjectsStillExist:
        # Privileges granted on objects inside another tenant's database: only DROP OWNED
        # run in that database clears them. Leave the role inert (no login, no password)
        # for the orphan report rather than failing the deletion forever.
        log.warning("tenant role kept without login: others granted it privileges", role=role)
        await conn.execute(
            sql.SQL("ALTER ROLE {} WITH NOLOGIN PASSWORD NULL").format(sql.Identifier(role))
        )


async def usage(conn: AsyncConnection, db: str) -> tuple[int, int]:
    cur = await conn.execute(
        "SELECT pg_catalog.pg_database_size(%s),"
        " (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE datname = %s)",
        (db, db),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def usage_all(conn: AsyncConnection) -> dict[str, tuple[int, int]]:
    cur = await conn.execute(
        "SELECT d.datname, pg_catalog.pg_database_size(d.oid),"
        " (SELECT count(*) FROM pg_catalog.pg_stat_activity a WHERE a.datname = d.datname)"
        " FROM pg_catalog.pg_database d WHERE d.datname LIKE %s",
        (DB_PREFIX + "%",),
    )
    return {name: (int(size), int(n)) for name, size, n in await cur.fetchall()}


async def disk_used(conn: AsyncConnection) -> int:
    """What every database of the cluster takes on disk (the tenants' and the cluster's own)."""
    cur = await conn.execute(
        "SELECT coalesce(sum(pg_catalog.pg_database_size(oid)), 0) FROM pg_catalog.pg_database"
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def platform_objects(conn: AsyncConnection) -> tuple[set[str], set[str]]:
    """Roles and databases on the cluster that look like ours (by generated prefix)."""
    roles = await conn.execute(
        "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname LIKE %s OR rolname LIKE %s",
        (ROLE_PREFIX + "%", TERMINAL_ROLE_PREFIX + "%"),
    )
    dbs = await conn.execute(
        "SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE %s", (DB_PREFIX + "%",)
    )
    return {r[0] for r in await roles.fetchall()}, {d[0] for d in await dbs.fetchall()}


async def harden_cluster(conn: AsyncConnection) -> None:
    """Tenants may connect to their own database only: not to postgres or template1."""
    for db in ("postgres", "template1"):
        await conn.execute(
            sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(
                sql.Identifier(db)
            )
        )
