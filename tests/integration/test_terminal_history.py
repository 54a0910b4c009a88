"""The statement history route (`api.<base>/v1/terminal/history`) and its retention."""

from __future__ import annotations

import asyncio
import uuid

import psycopg

from shardz_terminal.services import history
from tests.integration.helpers import assert_problem, bearer, create_db, signup, wait_for
from tests.integration.terminal_client import Term


async def test_history_lists_the_users_own_statements_newest_first(stack, gateway) -> None:
    user = await signup(gateway)
    other = await signup(gateway)
    db = await create_db(gateway, user["access_token"])
    second = await create_db(gateway, user["access_token"])
    async with await Term.open(stack, db["id"], user["access_token"]) as term:
        for n in range(55):
            await term.query(f"select {n} as n")
        await term.query("select 1/0")
        await term.query("select '" + "z" * 3000 + "'")
    async with await Term.open(stack, second["id"], user["access_token"]) as term:
        await term.query("select 'elsewhere'")
    async with await Term.open(
        stack, (await create_db(gateway, other["access_token"]))["id"], other["access_token"]
    ) as term:
        await term.query("select 'not yours'")
    headers = bearer(user["access_token"])

    async def flushed():
        # each terminal process writes its own batches: wait for the last of both sessions
        resp = await gateway.get("/v1/terminal/history", headers=headers)
        items = resp.json()["items"]
        if not items or items[0]["sql"] != "select 'elsewhere'":
            return None
        one = await gateway.get(
            "/v1/terminal/history", params={"database_id": db["id"]}, headers=headers
        )
        first_items = one.json()["items"]
        return resp if first_items and first_items[0]["sql"].startswith("select 'zzz") else None

    first = (await wait_for(flushed, timeout=10)).json()
    assert first["next_cursor"] and len(first["items"]) == 50
    assert all(i["sql"] != "select 'not yours'" for i in first["items"])
    mine = await gateway.get(
        "/v1/terminal/history", params={"database_id": db["id"]}, headers=headers
    )
    page = mine.json()
    long, error = page["items"][0], page["items"][1]
    assert long["sql"] == ("select '" + "z" * 3000 + "'")[:1024]
    assert error["sql"] == "select 1/0" and error["sqlstate"] == "22012"
    assert page["items"][2]["sql"] == "select 54 as n" and page["items"][2]["row_count"] == 1
    assert {"id", "database_id", "started_at", "elapsed_ms"} <= long.keys()
    rest = await gateway.get(
        "/v1/terminal/history",
        params={"database_id": db["id"], "cursor": page["next_cursor"]},
        headers=headers,
    )
    tail = rest.json()
    assert tail["next_cursor"] is None
    seen = [i["sql"] for i in page["items"] + tail["items"]]
    assert len(seen) == 57 and seen[-1] == "select 0 as n"
    # another user's filter on this database finds nothing; no token is a 401
    theirs = await gateway.get(
        "/v1/terminal/history",
        params={"database_id": db["id"]},
        headers=bearer(other["access_token"]),
    )
    assert [i["sql"] for i in theirs.json()["items"]] == []
    assert_problem(await gateway.get("/v1/terminal/history"), 401, "unauthenticated")
    bad = await gateway.get("/v1/terminal/history", params={"cursor": "!!"}, headers=headers)
    assert_problem(bad, 422, "validation_error")
    # the route is on api.<base> only, never on the terminal host
    elsewhere = await gateway.get(
        "/v1/terminal/history", headers={**headers, "Host": stack.host("dashboard")}
    )
    assert elsewhere.headers.get("content-type", "").startswith("text/html")


async def test_retention_purge_runs_in_one_worker_at_a_time(stack) -> None:
    dsn = stack.config.database_dsn("terminal")
    user_id = uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO statements (user_id, database_id, sql, started_at, elapsed_ms)"
            " SELECT %s, %s, 'old ' || g, now() - interval '31 days', 1"
            " FROM generate_series(1, 20) g",
            (user_id, uuid.uuid4()),
        )
        await conn.execute(
            "INSERT INTO statements (user_id, database_id, sql, started_at, elapsed_ms)"
            " VALUES (%s, %s, 'recent', now() - interval '29 days', 1)",
            (user_id, uuid.uuid4()),
        )
        # while one purge holds the lock, a second one (another replica) steps aside
        async with await psycopg.AsyncConnection.connect(dsn) as holder:
            await holder.execute("SELECT pg_advisory_xact_lock(%s)", (history.PURGE_LOCK,))
            assert await history.purge(conn, 30) is None
            await holder.rollback()
        results = await asyncio.gather(*(_purge(dsn) for _ in range(2)))
        assert sorted(results, key=lambda r: r or 0) in ([None, 20], [0, 20])
        left = await (
            await conn.execute("SELECT sql FROM statements WHERE user_id = %s", (user_id,))
        ).fetchall()
    assert left == [("recent",)]


async def _purge(dsn: str) -> int | None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return await history.purge(conn, 30)
