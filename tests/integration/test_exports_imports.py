"""Exports and imports of a database by its owner (CONTRACT section 5, ADR 0011)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from shardz_provisioner.domain import links
from tests.integration.dump_helpers import digest, download, gateway_path, upload_body, wait_job
from tests.integration.helpers import assert_problem, bearer, can_login, create_db, signup

BIG_ROWS = 1_000_000  # ~140 MB of heap: "100 MB of rows"


async def _fill(uri: str) -> None:
    """Several schemas, a view, a function, a sequence, a large object and 100+ MB of rows,
    generated on the server."""
    async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as conn:
        for stmt in (
            "CREATE SCHEMA sales",
            "CREATE SCHEMA audit",
            "CREATE TABLE sales.big (id bigint PRIMARY KEY, payload text NOT NULL)",
            "INSERT INTO sales.big SELECT g, md5(g::text) || md5((g * 7)::text)"
            f" || repeat(chr(65 + (g % 26)::int), 40) FROM generate_series(1, {BIG_ROWS}) g",
            "CREATE TABLE audit.log (id serial PRIMARY KEY, at timestamptz DEFAULT now(),"
            " note text, doc jsonb)",
            "INSERT INTO audit.log (note, doc) SELECT 'n' || g, jsonb_build_object('g', g)"
            " FROM generate_series(1, 5000) g",
            "CREATE TABLE public.files (name text PRIMARY KEY, blob oid)",
            "INSERT INTO public.files VALUES ('readme',"
            " lo_from_bytea(0, convert_to(repeat('large object ', 20000), 'UTF8')))",
            "CREATE VIEW sales.recent AS SELECT id FROM sales.big WHERE id > 999000",
            "CREATE FUNCTION audit.double(x int) RETURNS int LANGUAGE plpgsql"
            " AS $$ BEGIN RETURN x * 2; END $$",
            "CREATE INDEX ON audit.log (note)",
            "COMMENT ON TABLE sales.big IS 'the big one; with a semicolon'",
        ):
            await conn.execute(stmt)
        size = await (await conn.execute("SELECT pg_total_relation_size('sales.big')")).fetchone()
        assert size is not None and size[0] > 100 * 1024 * 1024


@pytest.mark.timeout(1800)  # 100+ MB out and back in on a shared 2-core machine
async def test_export_round_trips_through_an_import_into_a_fresh_database(
    gateway: httpx.AsyncClient, tmp_path: Path
) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    # a paid plan: the test stack's free plan stops at 48 MB
    source = await create_db(gateway, token, plan="db-starter")
    await _fill(source["uri"])

    started = await gateway.post(f"/v1/databases/{source['id']}/exports", headers=bearer(token))
    assert started.status_code == 202, started.text
    assert started.json()["status"] in ("queued", "running")
    t0 = time.monotonic()
    export = await wait_job(gateway, token, source["id"], "exports", started.json()["id"], 600)
    export_seconds = time.monotonic() - t0
    assert export["status"] == "done", export
    assert export["download_url"].startswith("http://api.")
    assert export["expires_at"] is not None

    # the link is the permission: no token
    dump = tmp_path / "export.dump"
    resp = await download(gateway, export["download_url"], dump)
    assert resp.status_code == 200
    assert resp.headers["content-disposition"].startswith("attachment")
    assert dump.stat().st_size == export["size_bytes"]
    assert dump.read_bytes()[:5] == b"PGDMP"

    target = await create_db(gateway, token, plan="db-starter")
    t0 = time.monotonic()
    imported = await gateway.post(
        f"/v1/databases/{target['id']}/imports",
        content=upload_body(dump),
        headers={**bearer(token), "content-type": "application/octet-stream"},
        timeout=300,
    )
    assert imported.status_code == 202, imported.text
    job = await wait_job(gateway, token, target["id"], "imports", imported.json()["id"], 900)
    import_seconds = time.monotonic() - t0
    assert job["status"] == "done", job
    assert job["format"] == "custom"
    assert job["refused"] == [] and job["refused_count"] == 0, job["refused"]

    before, after = await digest(source["uri"]), await digest(target["uri"])
    assert after == before
    assert after["sales.big"][0] == BIG_ROWS
    async with await psycopg.AsyncConnection.connect(target["uri"]) as conn:
        row = await (await conn.execute("SELECT audit.double(21)")).fetchone()
        assert row == (42,)
        # the restored objects belong to the target's own role
        owner = await (
            await conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'big'")
        ).fetchone()
        assert owner == (target["username"],)
    print(f"export {export_seconds:.1f}s, import {import_seconds:.1f}s")


CRAFTED_SQL = """\
-- a dump that tries to get out of its database
CREATE TABLE public.kept (id int PRIMARY KEY, v text);
INSERT INTO public.kept VALUES (1, 'a;b'), (2, $$it's; fine$$);
ALTER ROLE CURRENT_USER SUPERUSER;
COPY public.kept TO PROGRAM 'touch {marker}';
COPY public.kept FROM '/etc/passwd';
CREATE FUNCTION public.evil() RETURNS int LANGUAGE plpython3u AS $p$
import os
os.system('touch {marker}')
return 1
$p$;
\\! touch {marker}
DO $$ BEGIN EXECUTE 'ALTER ROLE ' || quote_ident(current_user) || ' CREATEROLE'; END $$;
GRANT ALL ON public.kept TO PUBLIC;
CREATE EXTENSION adminpack;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
COPY public.kept (id, v) FROM stdin;
3\tthree
4\t\\N
\\.
CREATE TABLE public.after (x int);
"""


async def _role_flags(uri: str) -> tuple[Any, ...]:
    async with await psycopg.AsyncConnection.connect(uri) as conn:
        row = await (
            await conn.execute(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
                " FROM pg_roles WHERE rolname = current_user"
            )
        ).fetchone()
    assert row is not None
    return tuple(row)


async def test_a_crafted_plain_dump_from_storage_imports_the_rest_and_reports_the_escapes(
    gateway: httpx.AsyncClient,
) -> None:
    """Attack: a plain SQL dump that asks for SUPERUSER, runs a program, reads a server
    file, creates an untrusted-language function, runs a psql shell escape and grants its
    tables away. Everything else lands; each of those is reported; nothing outside the
    database changed."""
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token)
    marker = f"/tmp/shardz-escape-{uuid.uuid4().hex}"
    put = await gateway.put(
        "/v1/storage/objects/dumps/crafted.sql",
        content=CRAFTED_SQL.format(marker=marker).encode(),
        headers=bearer(token),
    )
    assert put.status_code == 201, put.text
    before = await _role_flags(db["uri"])

    started = await gateway.post(
        f"/v1/databases/{db['id']}/imports",
        json={"object_key": "dumps/crafted.sql"},
        headers=bearer(token),
    )
    assert started.status_code == 202, started.text
    job = await wait_job(gateway, token, db["id"], "imports", started.json()["id"], 120)
    assert job["status"] == "done", job
    assert job["format"] == "plain"
    objects = [r["object"] for r in job["refused"]]
    reasons = " | ".join(r["reason"] for r in job["refused"])
    for command in (
        "ALTER ROLE",
        "COPY public",
        "CREATE FUNCTION",
        "\\!",
        "DO",
        "GRANT ALL",
        "CREATE EXTENSION",
    ):
        assert any(o.upper().startswith(command.upper()) for o in objects), (command, objects)
    assert job["refused_count"] == len(job["refused"]) == 8, job["refused"]
    assert "untrusted language plpython3u" in reasons
    assert "adminpack is not on the allow-list" in reasons
    assert "SELECT" not in reasons and "passwd" not in reasons  # reasons carry no SQL

    # the rest landed: rows through INSERT and COPY, the allowed extension, the last table
    async with await psycopg.AsyncConnection.connect(db["uri"]) as conn:
        rows = await (await conn.execute("SELECT id, v FROM public.kept ORDER BY id")).fetchall()
        assert rows == [(1, "a;b"), (2, "it's; fine"), (3, "three"), (4, None)]
        ext = await (
            await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pgcrypto'")
        ).fetchone()
        assert ext is not None
        assert await (await conn.execute("SELECT to_regclass('public.after')")).fetchone() == (
            "after",
        )
        granted = await (
            await conn.execute("SELECT has_table_privilege('public', 'public.kept', 'SELECT')")
        ).fetchone()
        assert granted == (False,)
    # nothing outside the database changed
    assert await _role_flags(db["uri"]) == before == (False, False, False, False, False)
    assert not os.path.exists(marker)
    assert await can_login(db["uri"])


async def test_a_crafted_custom_archive_imports_the_rest_and_reports_the_escapes(
    gateway: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Attack: a custom-format archive whose table of contents carries statements of its own
    (a real export, patched where a comment's text was)."""
    user = await signup(gateway)
    token = user["access_token"]
    source = await create_db(gateway, token)
    filler = "X" * 400
    async with await psycopg.AsyncConnection.connect(source["uri"], autocommit=True) as conn:
        await conn.execute("CREATE TABLE public.t (id int PRIMARY KEY)")
        await conn.execute("INSERT INTO public.t SELECT generate_series(1, 100)")
        await conn.execute(f"COMMENT ON TABLE public.t IS '{filler}'")
    started = await gateway.post(f"/v1/databases/{source['id']}/exports", headers=bearer(token))
    export = await wait_job(gateway, token, source["id"], "exports", started.json()["id"], 120)
    dump = tmp_path / "t.dump"
    assert (await download(gateway, export["download_url"], dump)).status_code == 200

    marker = f"/tmp/shardz-escape-{uuid.uuid4().hex}"
    payload = (
        "'';\nALTER ROLE CURRENT_USER SUPERUSER;\n"
        f"COPY public.t TO PROGRAM 'touch {marker}';\n"
        "CREATE FUNCTION public.evil() RETURNS int LANGUAGE plpython3u AS $p$ return 1 $p$;\n"
        "CREATE TABLE public.after_evil (x int);\n--"
    )
    original = f"'{filler}'".encode()
    raw = dump.read_bytes()
    assert raw.count(original) == 1
    crafted = tmp_path / "crafted.dump"
    crafted.write_bytes(raw.replace(original, payload.ljust(len(original)).encode()))

    target = await create_db(gateway, token)
    before = await _role_flags(target["uri"])
    imported = await gateway.post(
        f"/v1/databases/{target['id']}/imports",
        content=crafted.read_bytes(),
        headers={**bearer(token), "content-type": "application/octet-stream"},
    )
    assert imported.status_code == 202, imported.text
    job = await wait_job(gateway, token, target["id"], "imports", imported.json()["id"], 120)
    assert job["status"] == "done" and job["format"] == "custom", job
    reasons = [r["reason"] for r in job["refused"]]
    assert job["refused_count"] == 3, job["refused"]
    assert reasons[0] == "roles are outside the database"
    assert reasons[1] == "COPY to or from a program or a server file"
    assert reasons[2] == "untrusted language plpython3u"
    assert all(r["object"].startswith("COMMENT") for r in job["refused"])  # named by entry
    async with await psycopg.AsyncConnection.connect(target["uri"]) as conn:
        count = await (await conn.execute("SELECT count(*) FROM public.t")).fetchone()
        assert count == (100,)
        made = await (await conn.execute("SELECT to_regclass('public.after_evil')")).fetchone()
        assert made == ("after_evil",)
    assert await _role_flags(target["uri"]) == before == (False, False, False, False, False)
    assert not os.path.exists(marker)


async def test_other_users_see_nothing_and_cannot_import_others_objects(
    gateway: httpx.AsyncClient,
) -> None:
    """Attack: another account probes export/import ids, starts jobs on a database that is
    not theirs, or imports an object key that exists only in someone else's storage."""
    owner, other = await signup(gateway), await signup(gateway)
    db = await create_db(gateway, owner["access_token"])
    mine = await create_db(gateway, other["access_token"])
    started = await gateway.post(
        f"/v1/databases/{db['id']}/exports", headers=bearer(owner["access_token"])
    )
    assert started.status_code == 202
    export_id = started.json()["id"]
    stranger = bearer(other["access_token"])
    for path in (
        f"/v1/databases/{db['id']}/exports/{export_id}",
        f"/v1/databases/{mine['id']}/exports/{export_id}",  # their database, my export id
        f"/v1/databases/{db['id']}/imports/{export_id}",
    ):
        assert_problem(await gateway.get(path, headers=stranger), 404, "not_found")
    assert_problem(
        await gateway.post(f"/v1/databases/{db['id']}/exports", headers=stranger),
        404,
        "not_found",
    )
    assert_problem(
        await gateway.post(
            f"/v1/databases/{db['id']}/imports", content=b"SELECT 1;", headers=stranger
        ),
        404,
        "not_found",
    )
    # the owner keeps a dump in storage; the other user names that key for their database
    put = await gateway.put(
        "/v1/storage/objects/secret.sql",
        content=b"CREATE TABLE stolen (x int);",
        headers=bearer(owner["access_token"]),
    )
    assert put.status_code == 201
    refused = await gateway.post(
        f"/v1/databases/{mine['id']}/imports", json={"object_key": "secret.sql"}, headers=stranger
    )
    assert_problem(refused, 404, "not_found")
    # bad input: a clear problem, no job
    assert_problem(
        await gateway.post(
            f"/v1/databases/{mine['id']}/imports", json={"key": "x"}, headers=stranger
        ),
        422,
        "validation_error",
    )
    async with await psycopg.AsyncConnection.connect(mine["uri"]) as conn:
        tables = await (
            await conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        ).fetchone()
        assert tables == (0,)
    # storage's internal route is not reachable through the gateway
    user_id = owner["user"]["id"]
    assert (await gateway.get(f"/internal/objects/{user_id}/secret.sql")).status_code == 404


async def test_download_links_expire_and_refuse_tampering(
    gateway: httpx.AsyncClient, stack: Any, tmp_path: Path
) -> None:
    """Attack: a link with a changed signature, a signature moved to another export, and a
    correctly signed link past its expiry (only the expiry check stops it)."""
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token)
    ids = []
    for _ in range(2):
        started = await gateway.post(f"/v1/databases/{db['id']}/exports", headers=bearer(token))
        assert started.status_code == 202, started.text
        done = await wait_job(gateway, token, db["id"], "exports", started.json()["id"], 120)
        assert done["status"] == "done"
        ids.append(done)
    first, second = ids
    path = gateway_path(first["download_url"])
    assert (await download(gateway, first["download_url"], tmp_path / "ok")).status_code == 200

    base, query = path.split("?")
    params = dict(p.split("=") for p in query.split("&"))
    sig = params["signature"]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    tampered = f"{base}?expires={params['expires']}&signature={flipped}"
    assert_problem(await gateway.get(tampered), 403, "forbidden")
    moved = path.replace(first["id"], second["id"])
    assert_problem(await gateway.get(moved), 403, "forbidden")
    later = f"{base}?expires={int(params['expires']) + 3600}&signature={sig}"
    assert_problem(await gateway.get(later), 403, "forbidden")

    secret = stack.env["PROVISIONER_SECRET_KEY"].encode()
    past = int(time.time()) - 5
    expired_sig = links.signature(secret, uuid.UUID(db["id"]), uuid.UUID(first["id"]), past)
    expired = f"{base}?expires={past}&signature={expired_sig}"
    body = assert_problem(await gateway.get(expired), 403, "forbidden")
    assert "expired" in body["detail"]
