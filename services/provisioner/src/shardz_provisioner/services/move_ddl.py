"""DDL of a move (services/moves.py): the tenant's role copied to the target, the freeze, and
logical replication between the two copies. Every function is idempotent, so a rollback or
a retry can run it again; names are composed with psycopg.sql."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from psycopg import AsyncConnection, sql

from shardz_provisioner.services.ddl import ROLE_FLAGS, _exists

# set by the freeze (ddl.set_read_only) and re-derived on the target from the size state
NOT_COPIED = {"default_transaction_read_only"}


@dataclass(frozen=True)
class RoleCopy:
    verifier: str | None
    connection_limit: int
    settings: list[tuple[str, str]]


async def read_role(conn: AsyncConnection, role: str) -> RoleCopy:
    """The role's stored SCRAM verifier (pg_authid: superuser only), limit and defaults."""
    cur = await conn.execute(
        "SELECT a.rolpassword, a.rolconnlimit, r.rolconfig FROM pg_catalog.pg_authid a"
        " JOIN pg_catalog.pg_roles r ON r.oid = a.oid WHERE a.rolname = %s",
        (role,),
    )
    row = await cur.fetchone()
    if row is None:
        raise LookupError(f"role {role} is missing on the source")
    settings = []
    for item in row[2] or []:
        name, _, value = str(item).partition("=")
        if name not in NOT_COPIED:
            settings.append((name, value))
    return RoleCopy(row[0], int(row[1]), settings)


async def write_role(conn: AsyncConnection, role: str, spec: RoleCopy) -> None:
    """The same role on the target, without login until the switch (one usable copy)."""
    exists = await _exists(conn, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", role)
    verb = "ALTER" if exists else "CREATE"
    password = sql.Literal(spec.verifier) if spec.verifier is not None else sql.SQL("NULL")
    await conn.execute(
        sql.SQL(
            verb + " ROLE {} WITH NOLOGIN " + ROLE_FLAGS + " CONNECTION LIMIT {} PASSWORD {}"
        ).format(sql.Identifier(role), sql.Literal(spec.connection_limit), password)
    )
    for name, value in spec.settings:
        await conn.execute(
            sql.SQL("ALTER ROLE {} SET {} = {}").format(
                sql.Identifier(role), sql.Identifier(name), sql.Literal(value)
            )
        )


async def server_facts(conn: AsyncConnection) -> tuple[int, str]:
    """(major version, wal_level)."""
    cur = await conn.execute(
        "SELECT pg_catalog.current_setting('server_version_num')::int / 10000,"
        " pg_catalog.current_setting('wal_level')"
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


async def replicable(conn: AsyncConnection) -> str | None:
    """Why logical replication cannot carry this database (connected inside it), or None.
    It does not carry unlogged tables or large objects, and a table without a replica
    identity would refuse the tenant's UPDATEs and DELETEs while published."""
    cur = await conn.execute(
        "SELECT"
        " (SELECT count(*) FROM pg_catalog.pg_class c"
        "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        "  WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        "  AND c.relpersistence = 'p' AND c.relreplident <> 'f'"
        "  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid"
        "   AND ((c.relreplident = 'd' AND i.indisprimary)"
        "    OR (c.relreplident = 'i' AND i.indisreplident)))),"
        " (SELECT count(*) FROM pg_catalog.pg_class c"
        "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        "  WHERE c.relkind = 'r' AND c.relpersistence = 'u'),"
        " (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata)"
    )
    row = await cur.fetchone()
    assert row is not None
    no_identity, unlogged, large_objects = (int(v) for v in row)
    if no_identity:
        return f"{no_identity} tables have no primary key or replica identity"
    if unlogged:
        return "unlogged tables"
    if large_objects:
        return "large objects"
    return None


async def freeze(conn: AsyncConnection, db: str, role: str, terminal_role: str) -> None:
    """Writes stop: new sessions are read-only, open ones are ended (they reconnect)."""
    await conn.execute(
        sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
            sql.Identifier(db)
        )
    )
    await conn.execute(
        "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
        " WHERE datname = %s AND usename IN (%s, %s)",
        (db, role, terminal_role),
    )


async def unfreeze(conn: AsyncConnection, db: str) -> None:
    await conn.execute(
        sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(sql.Identifier(db))
    )


async def create_publication(conn: AsyncConnection, name: str) -> None:
    """Inside the source database: every table, also those created later."""
    if not await _exists(conn, "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = %s", name):
        await conn.execute(
            sql.SQL("CREATE PUBLICATION {} FOR ALL TABLES").format(sql.Identifier(name))
        )


async def create_subscription(
    conn: AsyncConnection, name: str, source_conninfo: str, tenant_role: str
) -> None:
    """Inside the target database. PostgreSQL 15 applies changes as the subscription's owner,
    so the owner is a role of its own with the tenant's rights only (created a superuser, as
    CREATE SUBSCRIPTION requires, then demoted before the subscription starts): a tenant's
    trigger or index function never runs as a superuser here."""
    role = sql.Identifier(name)
    if not await _exists(conn, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", name):
        await conn.execute(sql.SQL("CREATE ROLE {} WITH SUPERUSER NOLOGIN").format(role))
    else:
        await conn.execute(sql.SQL("ALTER ROLE {} WITH SUPERUSER NOLOGIN").format(role))
    if not await _exists(conn, "SELECT 1 FROM pg_catalog.pg_subscription WHERE subname = %s", name):
        await conn.execute(
            sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (enabled = false)")
            .format(sql.Identifier(name), sql.Literal(source_conninfo), sql.Identifier(name))
        )  # fmt: skip
    await conn.execute(sql.SQL("ALTER SUBSCRIPTION {} OWNER TO {}").format(role, role))
    # LOGIN: the apply worker starts a session as its owner; without a password, nobody can
    # log in as it from outside (SCRAM only)
    await conn.execute(
        sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD NULL " + ROLE_FLAGS + " INHERIT").format(role)
    )
    await conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(tenant_role), role))
    await conn.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(name)))


async def sync_state(conn: AsyncConnection, name: str) -> tuple[int, int, bool]:
    """(tables not yet copied, replication errors so far, whether its worker runs)."""
    cur = await conn.execute(
        "SELECT"
        " (SELECT count(*) FROM pg_catalog.pg_subscription_rel r"
        "  JOIN pg_catalog.pg_subscription s ON s.oid = r.srsubid"
        "  WHERE s.subname = %s AND r.srsubstate <> 'r'),"
        " (SELECT coalesce(sum(apply_error_count + sync_error_count), 0)"
        "  FROM pg_catalog.pg_stat_subscription_stats WHERE subname = %s),"
        " EXISTS (SELECT 1 FROM pg_catalog.pg_stat_subscription"
        "  WHERE subname = %s AND pid IS NOT NULL)",
        (name, name, name),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), bool(row[2])


async def current_lsn(conn: AsyncConnection) -> str:
    cur = await conn.execute("SELECT pg_catalog.pg_current_wal_lsn()::text")
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def slot_confirmed(conn: AsyncConnection, slot: str, lsn: str) -> bool:
    """Whether the subscriber has applied and flushed everything up to `lsn`."""
    cur = await conn.execute(
        "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_catalog.pg_replication_slots"
        " WHERE slot_name = %s",
        (lsn, slot),
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def read_sequences(conn: AsyncConnection) -> list[tuple[str, str, int]]:
    """Logical replication leaves sequences behind: their positions, to carry by hand."""
    cur = await conn.execute(
        "SELECT schemaname::text, sequencename::text, last_value FROM pg_catalog.pg_sequences"
        " WHERE last_value IS NOT NULL"
    )
    return [(str(s), str(n), int(v)) for s, n, v in await cur.fetchall()]


async def write_sequences(conn: AsyncConnection, values: list[tuple[str, str, int]]) -> None:
    for schema, name, value in values:
        await conn.execute(
            "SELECT pg_catalog.setval(pg_catalog.format('%%I.%%I', %s::text, %s::text)::regclass,"
            " %s, true)",
            (schema, name, value),
        )


async def drop_subscription(conn: AsyncConnection, name: str) -> None:
    """Inside the target database; detached from its slot first, so it drops even when the
    source does not answer (the slot is dropped there by `drop_slot`)."""
    if await _exists(conn, "SELECT 1 FROM pg_catalog.pg_subscription WHERE subname = %s", name):
        ident = sql.Identifier(name)
        await conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
        await conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
        await conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))


async def drop_move_role(conn: AsyncConnection, name: str) -> None:
    if await _exists(conn, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", name):
        await conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


async def drop_publication(conn: AsyncConnection, name: str) -> None:
    """Inside the source database."""
    await conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))


async def drop_slot(conn: AsyncConnection, slot: str, attempts: int = 50) -> None:
    """The slot keeps WAL on the source for ever: it goes, once its sender has let go."""
    for _ in range(attempts):
        cur = await conn.execute(
            "SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = %s", (slot,)
        )
        row = await cur.fetchone()
        if row is None:
            return
        if row[0] is None:
            await conn.execute("SELECT pg_catalog.pg_drop_replication_slot(%s)", (slot,))
            return
        await conn.execute("SELECT pg_catalog.pg_terminate_backend(%s)", (row[0],))
        await asyncio.sleep(0.1)
    raise TimeoutError(f"replication slot {slot} stays busy")
