"""One tenant cannot fill a shared cluster's disk: past its plan's size a database turns
read-only, and one that keeps writing regardless loses its logins (CONTRACT section 5)."""

from __future__ import annotations

import psycopg
import pytest

from tests.integration.helpers import bearer, can_login, create_db, signup, wait_for

LIMIT = 48 * 1024 * 1024  # the test stack's PLATFORM_FREE_PLAN_DATABASE_SIZE_BYTES
FILL = "INSERT INTO filler SELECT repeat(md5(g::text), 32) FROM generate_series(1, %s) g"


async def status(gateway, token: str, db_id: str) -> dict:
    resp = await gateway.get(f"/v1/databases/{db_id}", headers=bearer(token))
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_a_database_over_its_size_turns_read_only_until_it_shrinks(gateway, stack) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token, "big")
    assert db["size_limit_bytes"] == LIMIT
    async with await psycopg.AsyncConnection.connect(db["uri"], autocommit=True) as conn:
        await conn.execute("CREATE TABLE filler (v text)")
        await conn.execute(FILL, (40_000,))  # ~47 MB of rows plus the empty database

    async def read_only() -> bool:
        return (await status(gateway, token, db["id"]))["status"] == "read_only"

    await wait_for(read_only, timeout=60)
    async with await psycopg.AsyncConnection.connect(db["uri"], autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # SQLSTATE 25006
            await conn.execute("INSERT INTO filler VALUES ('more')")
        rows = await (await conn.execute("SELECT count(*) FROM filler")).fetchone()
        assert rows == (40_000,)  # the owner still reads
        # ... and may lift it for a session to delete
        await conn.execute("SET default_transaction_read_only = off")
        await conn.execute("DROP TABLE filler")

    async def writable() -> bool:
        return (await status(gateway, token, db["id"]))["status"] == "ready"

    await wait_for(writable, timeout=60)
    async with await psycopg.AsyncConnection.connect(db["uri"], autocommit=True) as conn:
        await conn.execute("CREATE TABLE again (v int)")


async def test_writing_on_past_read_only_costs_the_logins_until_it_fits(gateway, stack) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token, "greedy")
    async with await psycopg.AsyncConnection.connect(db["uri"], autocommit=True) as conn:
        await conn.execute("CREATE TABLE filler (v text)")
        await conn.execute(FILL, (40_000,))

    async def shown(value: str) -> bool:
        return (await status(gateway, token, db["id"]))["status"] == value

    await wait_for(lambda: shown("read_only"), timeout=60)
    async with await psycopg.AsyncConnection.connect(db["uri"], autocommit=True) as conn:
        # the tenant turns it off for itself and keeps writing: more than a quarter of the limit
        await conn.execute("SET default_transaction_read_only = off")
        await conn.execute(f'ALTER DATABASE "{db["database"]}" RESET default_transaction_read_only')
        await conn.execute(FILL, (16_000,))
    await wait_for(lambda: shown("suspended"), timeout=60)
    assert not await can_login(db["uri"])
    # it fits again once its plan allows more (what a paid plan change does)
    dsn = stack.config.database_dsn("provisioner")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("UPDATE databases SET plan = 'db-starter' WHERE id = %s", (db["id"],))
    await wait_for(lambda: shown("ready"), timeout=60)
    assert await can_login(db["uri"])
    async with await psycopg.AsyncConnection.connect(db["uri"], autocommit=True) as conn:
        await conn.execute("INSERT INTO filler VALUES ('writable again')")


async def test_an_abandoned_transaction_ends_whatever_the_session_set(gateway, stack) -> None:
    user = await signup(gateway)
    db = await create_db(gateway, user["access_token"], "idle")
    async with await psycopg.AsyncConnection.connect(db["uri"]) as conn:
        shown = await (await conn.execute("SHOW idle_in_transaction_session_timeout")).fetchone()
        assert shown == ("10min",)  # the role's default
        await conn.rollback()
        await conn.execute("SET idle_in_transaction_session_timeout = 0")  # the tenant lifts it
        await conn.commit()
        # a transaction is open now, and left idle
        pid = (await (await conn.execute("SELECT pg_backend_pid()")).fetchone())[0]

        async def ended() -> bool:
            async with await psycopg.AsyncConnection.connect(stack.tenant_dsns[0]) as admin:
                row = await (
                    await admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
                ).fetchone()
            return row is None

        await wait_for(ended, timeout=60, interval=1)  # the test stack's ceiling is 15 s
        with pytest.raises(psycopg.OperationalError):
            await conn.execute("SELECT 1")


async def test_a_runaway_statement_is_cancelled_whatever_its_timeout(gateway, stack) -> None:
    user = await signup(gateway)
    db = await create_db(gateway, user["access_token"], "runaway")
    async with await psycopg.AsyncConnection.connect(db["uri"], autocommit=True) as conn:
        shown = await (await conn.execute("SHOW statement_timeout")).fetchone()
        assert shown == ("30min",)  # the role's default
        await conn.execute("SET statement_timeout = 0")  # the tenant lifts it
        with pytest.raises(psycopg.errors.QueryCanceled):
            await conn.execute("SELECT pg_sleep(120)")  # the test stack's ceiling is 15 s
        assert await (await conn.execute("SELECT 1")).fetchone() == (1,)  # the session goes on
