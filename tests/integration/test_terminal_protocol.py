"""The SQL terminal over WebSocket (CONTRACT section 8): results, errors, transactions,
cancel and the caps the tenant cannot lift, through the gateway with a real client."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from tests.integration.helpers import create_db, signup
from tests.integration.terminal_client import Term, tenant_admin


@pytest.fixture
async def owner(gateway):
    user = await signup(gateway)
    db = await create_db(gateway, user["access_token"])
    return user, db


async def test_statements_are_split_by_the_server_with_one_answer_each(stack, owner) -> None:
    user, db = owner
    async with await Term.open(stack, db["id"], user["access_token"]) as term:
        assert term.ready["database"] == db["database"]
        assert term.ready["server_version"]
        # a semicolon inside a string literal does not split: the server parses the text
        answers = await term.query(
            "select 1 as n, 'a;b' as s, 1.50::numeric as price, '\\x00ff'::bytea as raw,"
            " timestamptz '2024-05-06 07:08:09+00' as at, null::int as nothing, true as ok;"
            " create table items (id int primary key, name text);"
            " insert into items values (1, 'one'), (2, 'two');"
            " select * from items order by id"
        )
        assert [a["type"] for a in answers] == ["result"] * 4
        first, create, insert, rows = answers
        assert first["columns"] == ["n", "s", "price", "raw", "at", "nothing", "ok"]
        assert first["types"] == ["int4", "text", "numeric", "bytea", "timestamptz", "int4", "bool"]
        n, s, price, raw, at, nothing, ok = first["rows"][0]
        assert (n, s, price, raw, nothing, ok) == (1, "a;b", "1.50", "\\x00ff", None, True)
        assert at.startswith("2024-05-06T07:08:09")
        assert first["row_count"] == 1 and first["command"] == "SELECT 1"
        assert first["truncated"] is False and first["elapsed_ms"] >= 0
        assert " n |  s  | price |  raw   |" in first["text"] and "(1 row)" in first["text"]
        assert create["command"] == "CREATE TABLE" and create["columns"] == []
        assert insert["command"] == "INSERT 0 2" and insert["row_count"] == 2
        assert rows["rows"] == [[1, "one"], [2, "two"]] and "(2 rows)" in rows["text"]


async def test_an_error_has_sqlstate_and_position_and_stops_the_rest(stack, owner) -> None:
    user, db = owner
    async with await Term.open(stack, db["id"], user["access_token"]) as term:
        answers = await term.query("select 1; selec 2; select 3")
        # the server rejects the whole text at parse time: one error, nothing ran
        assert [a["type"] for a in answers] == ["error"]
        error = answers[0]
        assert error["sqlstate"] == "42601" and "selec" in error["message"]
        assert error["position"] == len("select 1; ") + 1
        answers = await term.query("select 1 as a; select 1/0; select 3")
        assert [a["type"] for a in answers] == ["result", "error"]
        assert answers[1]["sqlstate"] == "22012"
        # the session goes on
        assert (await term.one("select 42 as x"))["rows"] == [[42]]


async def test_a_transaction_spans_messages(stack, owner) -> None:
    user, db = owner
    async with await Term.open(stack, db["id"], user["access_token"]) as term:
        await term.query("create table t (x int)")
        await term.query("begin")
        await term.query("insert into t values (1)")
        assert (await term.one("select count(*) from t"))["rows"] == [[1]]
        # not committed: another connection as the tenant does not see it
        with psycopg.connect(db["uri"]) as other:
            assert other.execute("select count(*) from t").fetchone() == (0,)
        await term.query("rollback")
        assert (await term.one("select count(*) from t"))["rows"] == [[0]]
        await term.query("begin; insert into t values (2)")
        await term.query("commit")
        with psycopg.connect(db["uri"]) as other:
            assert other.execute("select count(*) from t").fetchone() == (1,)
        # objects belong to the tenant's role, not to the terminal's login
        owner_row = await term.one("select tableowner from pg_tables where tablename = 't'")
        assert owner_row["rows"] == [[db["username"]]]


async def test_cancel_stops_a_long_statement_within_a_second(stack, owner) -> None:
    user, db = owner
    async with await Term.open(stack, db["id"], user["access_token"]) as term:
        qid = await term.start("select pg_sleep(30)")
        await asyncio.sleep(0.5)
        sent = time.monotonic()
        await term.send({"type": "cancel", "id": qid})
        answers = await term.answers(qid, timeout=10)
        took = time.monotonic() - sent
        assert took < 1.0, took
        assert answers[0]["type"] == "error" and answers[0]["sqlstate"] == "57014"
        assert (await term.one("select 1 as still"))["rows"] == [[1]]


async def test_a_dropped_socket_leaves_no_backend_and_rolls_back(stack, owner) -> None:
    user, db = owner
    term = await Term.open(stack, db["id"], user["access_token"])
    await term.query("create table kept (x int)")
    await term.query("begin; insert into kept values (1)")
    await term.start("select pg_sleep(60)")
    await asyncio.sleep(0.5)
    with tenant_admin(stack) as admin:
        busy = admin.execute(
            "select count(*) from pg_stat_activity where datname = %s", (db["database"],)
        ).fetchone()
        assert busy == (1,)
        term.ws.transport.abort()  # no close frame: the client vanished

        def gone() -> bool:
            row = admin.execute(
                "select count(*) from pg_stat_activity where datname = %s", (db["database"],)
            ).fetchone()
            return row == (0,)

        deadline = time.monotonic() + 5
        while not gone():
            assert time.monotonic() < deadline, "a backend outlived its WebSocket"
            await asyncio.sleep(0.05)  # lets the abort reach the socket
    with psycopg.connect(db["uri"]) as other:
        assert other.execute("select count(*) from kept").fetchone() == (0,)
