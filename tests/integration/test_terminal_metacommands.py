"""psql meta-commands through pgspecial, and every escape to files or a shell refused."""

from __future__ import annotations

import os
import uuid

import pytest

from shardz_devstack.config import repo_root
from tests.integration.helpers import create_db, signup
from tests.integration.terminal_client import Term, files_named


@pytest.fixture
async def term(stack, gateway):
    user = await signup(gateway)
    db = await create_db(gateway, user["access_token"])
    term = await Term.open(stack, db["id"], user["access_token"])
    await term.query(
        "create schema shop; create table shop.orders (id int primary key, note text);"
        " create function shop.twice(x int) returns int language sql as 'select 2 * x'"
    )
    term.db = db  # type: ignore[attr-defined]
    yield term
    await term.close()


def cell_values(result) -> set:
    return {v for row in result["rows"] for v in row}


async def test_listing_meta_commands_answer_like_psql(term) -> None:
    db = term.db
    tables = await term.one("\\dt shop.*")
    assert tables["type"] == "result" and "orders" in cell_values(tables)
    assert "orders" in tables["text"]
    described = await term.one("\\d shop.orders")
    assert described["type"] == "result"
    assert {"id", "note"} <= cell_values(described) and "integer" in described["text"]
    schemas = await term.one("\\dn")
    assert "shop" in cell_values(schemas)
    functions = await term.one("\\df shop.*")
    assert "twice" in cell_values(functions)
    roles = await term.one("\\du")
    assert db["username"] in cell_values(roles)
    databases = await term.one("\\l")
    assert db["database"] in cell_values(databases)
    conninfo = await term.one("\\conninfo")
    assert db["database"] in conninfo["text"] and db["username"] in conninfo["text"]
    assert "password" not in conninfo["text"].lower()
    helped = await term.one("\\?")
    for command in ("\\dt", "\\d", "\\dn", "\\df", "\\du", "\\l", "\\x", "\\timing", "\\conninfo"):
        assert any(str(row[0]).startswith(command) for row in helped["rows"]), command
    assert not any(
        str(row[0]).startswith(("\\copy", "\\o", "\\i", "\\e")) for row in helped["rows"]
    )


async def test_expanded_output_and_timing_toggle_per_session(term) -> None:
    toggled = await term.one("\\x")
    assert "Expanded display is on" in toggled["text"]
    shown = await term.one("select 1 as a, 'b' as b")
    assert "-[ RECORD 1 ]" in shown["text"] and "a | 1" in shown["text"]
    assert shown["rows"] == [[1, "b"]]  # rows do not change, only the text
    await term.one("\\x")
    assert "RECORD" not in (await term.one("select 1 as a"))["text"]
    assert "Timing is on" in (await term.one("\\timing"))["text"]
    assert "Time: " in (await term.one("select 1 as a"))["text"]
    assert "Timing is off" in (await term.one("\\timing"))["text"]
    assert "Time: " not in (await term.one("select 1 as a"))["text"]


ESCAPES = [
    "\\! touch {path}",
    "\\copy shop.orders to '{path}'",
    "\\copy shop.orders from '{path}'",
    "\\i {path}",
    "\\ir {path}",
    "\\o {path}",
    "\\w {path}",
    "\\g {path}",
    "\\e {path}",
    "\\set x `touch {path}`",
    "\\lo_import {path}",
    "\\lo_export 1 {path}",
    "\\setenv PAGER {path}",
    "\\pager touch {path}",
    "\\ns saved select 1",
]


@pytest.mark.parametrize("template", ESCAPES)
async def test_file_and_shell_escapes_are_refused_and_the_session_goes_on(term, template) -> None:
    name = f"shz-escape-{uuid.uuid4().hex}"
    path = f"/tmp/{name}"
    answer = await term.one(template.format(path=path))
    assert answer["type"] == "error", answer
    assert "refused" in answer["message"] or "unsupported" in answer["message"]
    assert (await term.one("select 1 as alive"))["rows"] == [[1]]
    for root in ("/tmp", str(repo_root()), os.path.expanduser("~")):
        assert not files_named(root, name), root


async def test_server_side_files_and_programs_stay_out_of_reach(term) -> None:
    name = f"shz-escape-{uuid.uuid4().hex}"
    for sql in (
        f"copy shop.orders to '/tmp/{name}'",
        f"copy shop.orders from '/tmp/{name}'",
        f"copy shop.orders to program 'touch /tmp/{name}'",
        "select pg_read_file('/etc/passwd')",
        f"select lo_export(lo_create(0), '/tmp/{name}')",
    ):
        answer = await term.one(sql)
        assert answer["type"] == "error" and answer["sqlstate"] == "42501", (sql, answer)
    assert not files_named("/tmp", name)
    await term.query("insert into shop.orders values (1, 'tab\there'), (2, null)")
    copied = await term.one("copy shop.orders to stdout")
    assert copied["type"] == "result" and copied["command"] == "COPY 2"
    assert copied["rows"] == [["1\ttab\\there"], ["2\t\\N"]]
    refused = await term.one("copy shop.orders from stdin")
    assert refused["type"] == "error" and "COPY FROM STDIN" in refused["message"]
    assert (await term.one("select count(*) from shop.orders"))["rows"] == [[2]]
