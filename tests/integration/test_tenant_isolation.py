"""CONTRACT section 5, attacked from inside: what a tenant can do with the credentials it is
given. Every check logs in for real, as the tenant, to the scram-auth tenant cluster."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg import errors as pe
from psycopg import sql
from psycopg.conninfo import make_conninfo

from shardz_common.plans import get_plan
from tests.integration.helpers import assert_problem, bearer, create_db, signup, wait_for

PG_ROLES = (
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
    "pg_signal_backend",
    "pg_read_all_stats",
    "pg_read_all_data",
    "pg_write_all_data",
    "pg_monitor",
)


def dsn(db: dict[str, Any], **over: Any) -> str:
    params = {
        "host": db["host"],
        "port": db["port"],
        "dbname": db["database"],
        "user": db["username"],
        "password": db["password"],
        "connect_timeout": 5,
        **over,
    }
    return make_conninfo(**params)


async def login(db: dict[str, Any], **over: Any) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(dsn(db, **over), autocommit=True)


async def login_refused(db: dict[str, Any], **over: Any) -> str:
    with pytest.raises(psycopg.OperationalError) as info:
        await (await login(db, **over)).close()
    return str(info.value)


async def one(conn: psycopg.AsyncConnection[Any], query: Any, params: Any = ()) -> Any:
    row = await (await conn.execute(query, params)).fetchone()
    return None if row is None else row[0]


async def admin_rows(stack: Any, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
    """As the cluster superuser (the test's view of the server, not the tenant's)."""
    async with await psycopg.AsyncConnection.connect(stack.tenant_dsns[0]) as conn:
        return await (await conn.execute(query, params)).fetchall()


async def tenant(gateway: Any, **extra: Any) -> tuple[str, dict[str, Any]]:
    user = await signup(gateway)
    return user["access_token"], await create_db(gateway, user["access_token"], **extra)


async def gone_from_server(stack: Any, db: dict[str, Any]) -> None:
    async def gone() -> bool:
        dbs = await admin_rows(
            stack, "SELECT 1 FROM pg_database WHERE datname=%s", (db["database"],)
        )
        roles = await admin_rows(
            stack, "SELECT 1 FROM pg_roles WHERE rolname=%s", (db["username"],)
        )
        return not dbs and not roles

    await wait_for(gone, timeout=30)


async def test_logins_are_confined_to_the_own_database(gateway) -> None:
    _, a = await tenant(gateway)
    _, b = await tenant(gateway)
    for other in (b["database"], "postgres", "template1"):
        assert "permission denied" in await login_refused(a, dbname=other), other
    assert "not currently accepting" in await login_refused(a, dbname="template0")
    # password auth is real (scram), not trust: a wrong or empty password is refused
    assert "password authentication failed" in await login_refused(a, password="wrong")
    assert "password authentication failed" in await login_refused(a, password=b["password"])
    assert "password" in await login_refused(a, password="")
    async with await login(a) as conn:
        assert await one(conn, "SELECT current_user") == a["username"]


async def test_the_tenant_role_holds_no_privilege(gateway, stack) -> None:
    _, a = await tenant(gateway)
    async with await login(a) as conn:
        flags = await (
            await conn.execute(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
                " FROM pg_roles WHERE rolname = current_user"
            )
        ).fetchone()
        assert flags == (False, False, False, False, False)
        member_of = await one(
            conn,
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member"
            " WHERE r.rolname = current_user",
        )
        assert member_of == 0
        for role in PG_ROLES:
            assert (
                await one(conn, "SELECT pg_has_role(current_user, %s, 'USAGE')", (role,)) is False
            )
            assert (
                await one(conn, "SELECT pg_has_role(current_user, %s, 'MEMBER')", (role,)) is False
            )
    [(verifier, limit)] = await admin_rows(
        stack, "SELECT rolpassword, rolconnlimit FROM pg_authid WHERE rolname=%s", (a["username"],)
    )
    assert verifier.startswith("SCRAM-SHA-256$") and a["password"] not in verifier
    assert limit == get_plan("free", "database").limits["connections"]


def refused_statements(own_role: str, other_role: str) -> list[str]:
    alter_own = "ALTER ROLE {} {}".format(sql.Identifier(own_role).as_string(), "{}")
    return [
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_ls_dir('.')",
        "SELECT pg_stat_file('postgresql.conf')",
        "COPY (SELECT 1) TO PROGRAM 'id'",
        "COPY t FROM PROGRAM 'id'",
        "COPY t FROM '/etc/passwd'",
        "COPY (SELECT 'pwned') TO '/tmp/shz-isolation-pwned'",
        "SELECT lo_import('/etc/passwd')",
        "SELECT lo_export(0, '/tmp/shz-isolation-pwned')",
        "CREATE DATABASE shz_isolation_x",
        "CREATE ROLE shz_isolation_x",
        "ALTER ROLE current_user CONNECTION LIMIT -1",
        *(alter_own.format(f) for f in ("SUPERUSER", "CREATEDB", "CREATEROLE", "REPLICATION")),
        alter_own.format("BYPASSRLS"),
        "GRANT pg_read_server_files TO current_user",
        "GRANT pg_execute_server_program TO current_user",
        "SET temp_file_limit = -1",
        "SET log_statement = 'none'",
        "ALTER SYSTEM SET max_connections = 5",
        "LOAD '$libdir/adminpack'",
        "SET ROLE shardz_admin",
        "SET SESSION AUTHORIZATION shardz_admin",
        f"SET ROLE {sql.Identifier(other_role).as_string()}",
        f"ALTER ROLE {sql.Identifier(other_role).as_string()} PASSWORD 'x'",
        "ALTER DATABASE postgres OWNER TO current_user",
    ]


async def test_dangerous_statements_are_refused_and_change_nothing(gateway, stack) -> None:
    _, a = await tenant(gateway)
    _, b = await tenant(gateway)
    async with await login(a) as conn:
        await conn.execute("CREATE TABLE t (line text)")
        for stmt in refused_statements(a["username"], b["username"]):
            with pytest.raises(pe.InsufficientPrivilege):
                await conn.execute(stmt)
        # there is no `postgres` role on the cluster; it must be an error either way
        with pytest.raises(
            (pe.InsufficientPrivilege, pe.InvalidParameterValue, pe.UndefinedObject)
        ):
            await conn.execute("SET ROLE postgres")
        available = {
            r[0]
            for r in await (
                await conn.execute("SELECT name FROM pg_available_extensions")
            ).fetchall()
        }
        for ext in sorted({"adminpack", "file_fdw", "dblink", "plpython3u", "plperlu"} & available):
            with pytest.raises(pe.InsufficientPrivilege):
                await conn.execute(sql.SQL("CREATE EXTENSION {}").format(sql.Identifier(ext)))
        # prepared transactions would make DROP DATABASE ... WITH (FORCE) fail at deletion
        await conn.execute("BEGIN")
        with pytest.raises(pe.ObjectNotInPrerequisiteState):
            await conn.execute("PREPARE TRANSACTION 'shz-hold'")
        await conn.execute("ROLLBACK")
        # nothing changed
        assert await one(conn, "SELECT count(*) FROM t") == 0
        assert await one(conn, "SELECT count(*) FROM pg_largeobject_metadata") == 0
        assert await one(conn, "SELECT current_user") == a["username"]
        assert await one(conn, "SHOW temp_file_limit") == "2GB"  # the cluster cap, untouched
        assert await one(conn, "SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql'") == 0
    assert not await admin_rows(stack, "SELECT 1 FROM pg_roles WHERE rolname='shz_isolation_x'")
    assert not await admin_rows(stack, "SELECT 1 FROM pg_database WHERE datname='shz_isolation_x'")
    assert not await admin_rows(
        stack, "SELECT 1 FROM pg_file_settings WHERE sourcefile LIKE %s", ("%auto.conf",)
    )
    pwned = await admin_rows(stack, "SELECT pg_stat_file('/tmp/shz-isolation-pwned', true)")
    assert pwned == [(None,)]
    [(limit, superuser, createdb)] = await admin_rows(
        stack,
        "SELECT rolconnlimit, rolsuper, rolcreatedb FROM pg_roles WHERE rolname=%s",
        (a["username"],),
    )
    free_limit = get_plan("free", "database").limits["connections"]
    assert (limit, superuser, createdb) == (free_limit, False, False)
    async with await login(b) as conn:  # B's password was not changed by A
        assert await one(conn, "SELECT 1") == 1


async def test_another_tenants_queries_are_invisible_and_untouchable(gateway) -> None:
    _, a = await tenant(gateway)
    _, b = await tenant(gateway)
    marker = "b-secret-marker"
    async with await login(b) as b_conn, await login(a) as a_conn:
        b_query = asyncio.create_task(
            one(b_conn, "SELECT 'b-secret' || '-marker' FROM pg_sleep(3)")
        )

        async def b_pid() -> Any:
            return await one(
                a_conn,
                "SELECT pid FROM pg_stat_activity WHERE usename = %s"
                " AND state IS DISTINCT FROM 'idle'",
                (b["username"],),
            )

        pid = await wait_for(b_pid, timeout=5)
        rows = await (await a_conn.execute("SELECT pid, query FROM pg_stat_activity")).fetchall()
        assert marker not in str(rows) and "pg_sleep" not in str(rows)
        assert dict(rows)[pid] == "<insufficient privilege>"
        for fn in ("pg_terminate_backend", "pg_cancel_backend"):
            with pytest.raises(pe.InsufficientPrivilege):
                await a_conn.execute(sql.SQL("SELECT {}(%s)").format(sql.Identifier(fn)), (pid,))
        assert await b_query == marker


HOSTILE_LABELS = [
    'x"; DROP ROLE shardz_admin; --',
    "x'; DROP DATABASE postgres; --",
    "x$$; ALTER ROLE current_user SUPERUSER; $$",
    "shz_u_0123",
    "x\u0000y",
    "x\\'; CREATE ROLE evil SUPERUSER; --",
]


async def test_hostile_labels_never_reach_the_cluster(gateway, stack) -> None:
    user = await signup(gateway)
    roles_q, dbs_q = "SELECT rolname FROM pg_roles", "SELECT datname FROM pg_database"
    roles, dbs = await admin_rows(stack, roles_q), await admin_rows(stack, dbs_q)
    for label in HOSTILE_LABELS:
        resp = await gateway.post(
            "/v1/databases", json={"name": label}, headers=bearer(user["access_token"])
        )
        assert_problem(resp, 422, "validation_error")
    assert sorted(await admin_rows(stack, roles_q)) == sorted(roles)
    assert sorted(await admin_rows(stack, dbs_q)) == sorted(dbs)
    assert ("shardz_admin",) in roles


TRAP = """
CREATE TABLE public.tripwire (who text, what text);
GRANT INSERT ON public.tripwire TO PUBLIC;
CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE FUNCTION evil.trip(what text) RETURNS void LANGUAGE sql SECURITY INVOKER
  AS $$ INSERT INTO public.tripwire VALUES (current_user, what) $$;
CREATE FUNCTION evil.pg_database_size(name) RETURNS bigint LANGUAGE sql
  AS $$ SELECT evil.trip('pg_database_size(name)'); SELECT 0::bigint $$;
CREATE FUNCTION evil.pg_database_size(text) RETURNS bigint LANGUAGE sql
  AS $$ SELECT evil.trip('pg_database_size(text)'); SELECT 0::bigint $$;
CREATE FUNCTION evil.pg_database_size(oid) RETURNS bigint LANGUAGE sql
  AS $$ SELECT evil.trip('pg_database_size(oid)'); SELECT 0::bigint $$;
CREATE FUNCTION evil.pg_terminate_backend(integer) RETURNS boolean LANGUAGE sql
  AS $$ SELECT evil.trip('pg_terminate_backend'); SELECT true $$;
CREATE FUNCTION evil.pg_terminate_backend(integer, bigint) RETURNS boolean LANGUAGE sql
  AS $$ SELECT evil.trip('pg_terminate_backend2'); SELECT true $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql
  AS $$ SELECT evil.trip('now'); SELECT pg_catalog.statement_timestamp() $$;
CREATE FUNCTION evil.eq(name, text) RETURNS boolean LANGUAGE sql
  AS $$ SELECT evil.trip('name = text'); SELECT $1::text OPERATOR(pg_catalog.=) $2 $$;
CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = text, FUNCTION = evil.eq);
"""


async def test_planted_search_path_functions_never_run_as_the_platform(gateway, stack) -> None:
    token = (await signup(gateway))["access_token"]
    a = await create_db(gateway, token)
    other = await create_db(gateway, token)
    path = "evil, pg_catalog, public"  # pg_catalog listed after evil: evil shadows it
    async with await login(a) as conn:
        await conn.execute(TRAP)
        await conn.execute(
            sql.SQL("ALTER DATABASE {} SET search_path = " + path).format(
                sql.Identifier(a["database"])
            )
        )
        await conn.execute("ALTER ROLE current_user SET search_path = " + path)
    async with await login(a) as conn:  # the trap is armed for any unqualified caller
        await conn.execute("SELECT pg_database_size(current_database()::name), now()")
        assert await one(conn, "SELECT count(*) FROM public.tripwire") == 2
        await conn.execute("TRUNCATE public.tripwire")

    ha = bearer(token)
    for db in (a, other):
        assert (await gateway.get(f"/v1/databases/{db['id']}/usage", headers=ha)).status_code == 200
    rotated = await gateway.post(f"/v1/databases/{a['id']}/rotate-credentials", headers=ha)
    assert rotated.status_code == 200, rotated.text
    assert (await gateway.delete(f"/v1/databases/{other['id']}", headers=ha)).status_code in (
        202,
        204,
    )
    await gone_from_server(stack, other)
    assert (await gateway.get(f"/v1/databases/{a['id']}/usage", headers=ha)).status_code == 200
    async with await login(rotated.json()) as conn:
        assert await (await conn.execute("SELECT who, what FROM public.tripwire")).fetchall() == []


async def test_the_plan_connection_limit_holds(gateway) -> None:
    _, a = await tenant(gateway)
    limit = int(get_plan("free", "database").limits["connections"])
    conns = [await login(a) for _ in range(limit)]
    try:
        assert "too many connections for role" in await login_refused(a)
    finally:
        for conn in conns:
            await conn.close()
    async with await login(a) as conn:  # slots come back
        assert await one(conn, "SELECT 1") == 1


async def test_a_tenant_cannot_make_its_database_undeletable(gateway, stack) -> None:
    token, a = await tenant(gateway)
    async with await login(a) as conn:
        # The owner may flag its database as a template, and DROP DATABASE refuses templates.
        own = sql.Identifier(a["database"])
        await conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(own))
    resp = await gateway.delete(f"/v1/databases/{a['id']}", headers=bearer(token))
    assert resp.status_code in (202, 204)
    await gone_from_server(stack, a)


async def test_grants_to_another_tenants_role_do_not_block_its_deletion(gateway, stack) -> None:
    _, a = await tenant(gateway)
    b_token, b = await tenant(gateway)
    b_role = sql.Identifier(b["username"])
    async with await login(a) as conn:
        await conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(a["database"]), b_role
            )
        )
        await conn.execute("CREATE TABLE shared (x int)")
        await conn.execute(sql.SQL("GRANT SELECT ON shared TO {}").format(b_role))
    resp = await gateway.delete(f"/v1/databases/{b['id']}", headers=bearer(b_token))
    assert resp.status_code in (202, 204)

    async def b_db_gone() -> bool:
        return not await admin_rows(
            stack, "SELECT 1 FROM pg_database WHERE datname=%s", (b["database"],)
        )

    await wait_for(b_db_gone, timeout=30)
    # B's old credentials log in nowhere, not even into A's database that was shared with it
    await login_refused(b)
    await login_refused(b, dbname=a["database"])
    # the role is dropped, or at worst kept inert for the orphan report
    left = await admin_rows(
        stack, "SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname=%s", (b["username"],)
    )
    assert left in ([], [(False, None)])
    # and the deletion queue is not stuck behind B: a later deletion still finishes
    c_token, c = await tenant(gateway)
    await gateway.delete(f"/v1/databases/{c['id']}", headers=bearer(c_token))
    await gone_from_server(stack, c)
