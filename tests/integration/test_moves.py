"""Moving databases between clusters (CONTRACT section 5, POST /v1/databases/{id}/move):
the owner's password, rows and sequences arrive; the old copy stops taking logins at once
and is gone after the grace period; `db.moved` is emitted once."""

from __future__ import annotations

import asyncio

import httpx
import psycopg
import pytest

from tests.integration.helpers import (
    admin_token,
    assert_problem,
    bearer,
    can_login,
    create_db,
    signup,
    wait_for,
)
from tests.integration.move_support import (
    active,
    checksum,
    fill,
    get_db,
    move_clusters,
    move_leftovers,
    moved_events,
    moves_of,
    on_cluster,
    wait_moved,
    with_port,
)


async def _credential_port(stack, db: dict, user_id: str) -> int:
    """Where the terminal gateway's next session for `db` would connect."""
    url = f"{stack.internal_urls['provisioner']}/internal/session-credentials"
    secret = stack.env["PROVISIONER_INTERNAL_SECRET"]
    async with httpx.AsyncClient() as direct:
        resp = await direct.post(
            url,
            json={"database_id": db["id"], "user_id": user_id},
            headers={"Authorization": f"Bearer {secret}"},
        )
    assert resp.status_code == 200, resp.text
    return int(resp.json()["port"])


async def test_a_moved_database_keeps_password_and_rows_and_its_old_copy_goes(
    gateway, stack
) -> None:
    five, _ = await move_clusters(gateway, stack)
    admin = await admin_token(gateway, stack.env)
    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    db = await create_db(gateway, token)
    home = stack.tenant_clusters[0]
    assert db["port"] == home.port
    rows = await fill(db["uri"], 20_000)
    session = await psycopg.AsyncConnection.connect(db["uri"], autocommit=True)
    try:
        async with active(gateway, admin, five.name):
            resp = await gateway.post(
                f"/v1/databases/{db['id']}/move", json={"cluster": five.name}, headers=bearer(admin)
            )
            assert resp.status_code == 202, resp.text
            assert resp.json()["state"] in ("queued", "running")
            assert (await get_db(gateway, token, db["id"]))["status"] == "moving"
            moved = await wait_moved(gateway, token, db["id"], five.port)
        assert moved["status"] == "ready" and moved["host"] == "127.0.0.1"
        # the session open during the move was ended: it cannot write to a copy left behind
        with pytest.raises(psycopg.OperationalError):
            await session.execute("INSERT INTO items (label) VALUES ('lost')")
    finally:
        await session.close()
    new_uri = with_port(db["uri"], home.port, five.port)
    assert moved["uri"] == with_port(
        db["uri"].replace(f":{db['password']}@", "@"), home.port, five.port
    )
    # the password the owner was given logs in at the new address, and every row is there
    assert await can_login(new_uri)
    assert await checksum(new_uri) == rows
    async with await psycopg.AsyncConnection.connect(new_uri, autocommit=True) as conn:
        nxt = await (
            await conn.execute("INSERT INTO items (label) VALUES ('x') RETURNING id")
        ).fetchone()
    assert nxt == (20_001,)  # the sequence came along
    # the old copy takes no logins at once (one usable copy), and is gone after the grace
    assert not await can_login(db["uri"])
    assert await _credential_port(stack, db, uid) == five.port  # where the terminal goes
    [move] = await moves_of(gateway, admin, db["id"])
    assert move["mode"] == "dump" and move["from_cluster"] == "local-1"
    assert move["freeze_seconds"] is not None and move["freeze_seconds"] > 0

    async def source_gone() -> bool:
        return await on_cluster(home.admin_dsn, db) == (False, False)

    await wait_for(source_gone, timeout=30)
    assert (await moves_of(gateway, admin, db["id"]))[0]["state"] == "done"
    assert await on_cluster(five.admin_dsn, db) == (True, True)
    assert await moved_events(stack, db["id"]) == 1
    report = (await gateway.get("/v1/clusters/orphans", headers=bearer(admin))).json()
    assert all(db["username"] not in o["roles"] for o in report)


async def test_logical_replication_carries_writes_made_during_the_copy(gateway, stack) -> None:
    """Both clusters run wal_level=logical: rows written while the copy runs arrive too, and
    writes are frozen only for the last step (well under 2 s)."""
    five, six = await move_clusters(gateway, stack)
    admin = await admin_token(gateway, stack.env)
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token)
    home = stack.tenant_clusters[0]
    await fill(db["uri"], 50_000)
    async with active(gateway, admin, five.name):  # first onto a logical cluster (by dump)
        await gateway.post(
            f"/v1/databases/{db['id']}/move", json={"cluster": five.name}, headers=bearer(admin)
        )
        await wait_moved(gateway, token, db["id"], five.port)
    uri = with_port(db["uri"], home.port, five.port)
    written = 0
    stop = asyncio.Event()

    async def writer() -> None:
        nonlocal written
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as conn:
                    while not stop.is_set():
                        await conn.execute("INSERT INTO items (label) VALUES ('during')")
                        written += 1
                        await asyncio.sleep(0.005)
            except psycopg.Error:  # the freeze ends sessions and refuses writes
                await asyncio.sleep(0.05)

    task = asyncio.create_task(writer())
    try:
        await asyncio.sleep(0.3)
        async with active(gateway, admin, six.name):
            resp = await gateway.post(
                f"/v1/databases/{db['id']}/move", json={"cluster": six.name}, headers=bearer(admin)
            )
            assert resp.status_code == 202, resp.text
            await wait_moved(gateway, token, db["id"], six.port)
    finally:
        stop.set()
        await task
    final = with_port(db["uri"], home.port, six.port)
    async with await psycopg.AsyncConnection.connect(final) as conn:
        during = await (
            await conn.execute("SELECT count(*) FROM items WHERE label = 'during'")
        ).fetchone()
    assert written > 0 and during == (written,)  # not one acknowledged write lost
    latest = (await moves_of(gateway, admin, db["id"]))[0]
    assert latest["mode"] == "logical", latest
    assert latest["freeze_seconds"] < 2, latest
    async with await psycopg.AsyncConnection.connect(final, autocommit=True) as conn:
        await conn.execute("INSERT INTO items (label) VALUES ('after')")  # sequence carried
    # the subscription, its role, the slot and the publication went with the move
    assert await move_leftovers(six.admin_dsn) == []
    assert await move_leftovers(five.admin_dsn) == []
    assert await moved_events(stack, db["id"]) == 2


async def test_only_admins_move_and_a_refused_move_changes_nothing(gateway, stack) -> None:
    five, six = await move_clusters(gateway, stack)
    admin = await admin_token(gateway, stack.env)
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token)
    url = f"/v1/databases/{db['id']}/move"
    async with active(gateway, admin, five.name):
        # the owner is no administrator: moving is an operator's decision
        assert_problem(
            await gateway.post(url, json={"cluster": five.name}, headers=bearer(token)),
            403,
            "forbidden",
        )
        assert_problem(
            await gateway.post(url, json={"cluster": "atlantis"}, headers=bearer(admin)),
            422,
            "validation_error",
        )
        assert_problem(
            await gateway.post(url, json={"cluster": "local-1"}, headers=bearer(admin)),
            409,
            "conflict",
        )
    # a draining cluster takes no databases, by move or otherwise
    assert_problem(
        await gateway.post(url, json={"cluster": six.name}, headers=bearer(admin)), 409, "conflict"
    )
    assert_problem(
        await gateway.post(
            "/v1/databases/00000000-0000-0000-0000-000000000000/move",
            json={"cluster": five.name},
            headers=bearer(admin),
        ),
        404,
        "not_found",
    )
    after = await get_db(gateway, token, db["id"])
    assert after["status"] == "ready" and after["port"] == db["port"]
    assert await moves_of(gateway, admin, db["id"]) == []
    assert await can_login(db["uri"])


async def test_draining_with_move_empties_the_cluster(gateway, stack) -> None:
    five, _ = await move_clusters(gateway, stack)
    admin = await admin_token(gateway, stack.env)
    user = await signup(gateway)
    token = user["access_token"]
    home = stack.tenant_clusters[0]
    dbs = [await create_db(gateway, token) for _ in range(3)]
    sums = [await fill(d["uri"], 1000 * (i + 1)) for i, d in enumerate(dbs)]
    async with active(gateway, admin, five.name):
        for d in dbs:
            resp = await gateway.post(
                f"/v1/databases/{d['id']}/move", json={"cluster": five.name}, headers=bearer(admin)
            )
            assert resp.status_code == 202, resp.text
        for d in dbs:
            await wait_moved(gateway, token, d["id"], five.port)
    for d in dbs:  # their copies on local-1 are dropped after the grace period (3 s here)

        async def dropped(d: dict = d) -> bool:
            return await on_cluster(home.admin_dsn, d) == (False, False)

        await wait_for(dropped, timeout=60)
    # local-5 drained with ?move=true: all of its databases go back to an active cluster
    drained = await gateway.post(
        f"/v1/clusters/{five.name}/drain", params={"move": "true"}, headers=bearer(admin)
    )
    assert drained.status_code == 200, drained.text
    assert drained.json()["status"] == "draining" and drained.json()["moves_queued"] >= 3
    for d, rows in zip(dbs, sums, strict=True):

        async def off_five(d: dict = d) -> dict | None:
            now = await get_db(gateway, token, d["id"])
            return now if now["port"] != five.port and now["status"] == "ready" else None

        now = await wait_for(off_five, timeout=120, interval=0.2)
        assert await checksum(with_port(d["uri"], home.port, now["port"])) == rows
    state = {
        c["name"]: c
        for c in (await gateway.get("/v1/clusters", headers=bearer(admin))).json()["items"]
    }
    assert state[five.name]["databases"] == 0

    async def emptied() -> bool:
        async with await psycopg.AsyncConnection.connect(five.admin_dsn) as conn:
            row = await (
                await conn.execute(
                    "SELECT count(*) FROM pg_database WHERE datname LIKE 'shz\\_d\\_%%'"
                )
            ).fetchone()
        return row == (0,)

    await wait_for(emptied, timeout=60)


async def test_a_tenants_function_met_during_the_copy_never_runs_as_a_superuser(
    gateway, stack
) -> None:
    """The attack: a CHECK constraint calls a function that makes the tenant a superuser
    whenever it finds itself running as one. Restoring rows as a superuser (pg_restore, or a
    superuser-owned subscription) would run it so; the move runs it with the tenant's rights."""
    five, six = await move_clusters(gateway, stack)
    admin = await admin_token(gateway, stack.env)
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token)
    home = stack.tenant_clusters[0]
    role = db["username"]
    async with await psycopg.AsyncConnection.connect(db["uri"], autocommit=True) as conn:
        await conn.execute(
            "CREATE FUNCTION public.grab() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN"
            " IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN"
            " CREATE TABLE IF NOT EXISTS public.pwned (at timestamptz);"
            f" ALTER ROLE {role} SUPERUSER; END IF; RETURN true; END $$"
        )
        await conn.execute(
            "CREATE TABLE items (id bigserial PRIMARY KEY, label text NOT NULL,"
            " CHECK (public.grab()))"
        )
        await conn.execute("INSERT INTO items (label) SELECT 'x' FROM generate_series(1, 100)")

    async def superuser(dsn: str) -> bool:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            row = await (
                await conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,))
            ).fetchone()
        return bool(row and row[0])

    for target, mode in ((five, "dump"), (six, "logical")):
        async with active(gateway, admin, target.name):
            resp = await gateway.post(
                f"/v1/databases/{db['id']}/move",
                json={"cluster": target.name},
                headers=bearer(admin),
            )
            assert resp.status_code == 202, resp.text
            await wait_moved(gateway, token, db["id"], target.port)
        assert (await moves_of(gateway, admin, db["id"]))[0]["mode"] == mode
        assert not await superuser(target.admin_dsn)
        # the function leaves this mark whenever it finds itself a superuser (the move's
        # cut-over resets the role's flags, so the mark is what shows it ran as one)
        inside = target.admin_dsn.rsplit("/", 1)[0] + "/" + db["database"]
        async with await psycopg.AsyncConnection.connect(inside) as conn:
            mark = await (await conn.execute("SELECT to_regclass('public.pwned')")).fetchone()
        assert mark == (None,)
        uri = with_port(db["uri"], home.port, target.port)
        async with await psycopg.AsyncConnection.connect(uri) as conn:
            count = await (await conn.execute("SELECT count(*) FROM items")).fetchone()
        assert count == (100,)
