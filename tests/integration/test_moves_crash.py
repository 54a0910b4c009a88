"""Kill the mover in the middle of a move: after the copy and before the switch (the
reconciler rolls back to the source), and after the switch (the source goes after its
grace period). Either way one copy takes logins, with every row, and no role is orphaned."""

from __future__ import annotations

import httpx
import psycopg

from tests.integration.helpers import (
    admin_token,
    assert_problem,
    bearer,
    can_login,
    create_db,
    faulty_provisioner,
    free_port,
    provisioner_process,
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


async def _move_and_die(stack, step: str, db: dict, target: str, admin: str) -> None:
    """POST the move to a provisioner API that exits (137) when the move reaches `step`."""
    port = free_port()
    with faulty_provisioner(stack, step, PROVISIONER_PORT=str(port)) as api:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as direct:

            async def ready() -> bool:  # a loaded machine starts a process slowly
                try:
                    return (await direct.get("/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_for(ready, timeout=120, interval=0.3)
            try:
                resp = await direct.post(
                    f"/v1/databases/{db['id']}/move",
                    json={"cluster": target},
                    headers=bearer(admin),
                )
                assert resp.status_code == 202, resp.text
            except httpx.HTTPError:
                pass  # it may die before the answer is out
        assert api.wait(120) == 137


async def test_killed_after_the_copy_the_move_is_rolled_back(gateway, stack) -> None:
    five, six = await move_clusters(gateway, stack)
    admin = await admin_token(gateway, stack.env)
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token)
    home = stack.tenant_clusters[0]
    async with active(gateway, admin, five.name):  # onto a logical cluster first
        await gateway.post(
            f"/v1/databases/{db['id']}/move", json={"cluster": five.name}, headers=bearer(admin)
        )
    await wait_moved(gateway, token, db["id"], five.port)
    uri = with_port(db["uri"], home.port, five.port)
    rows = await fill(uri, 5000)
    async with active(gateway, admin, six.name):
        await _move_and_die(stack, "move_after_copy", db, six.name, admin)
    # dead mid-way: the record still points at the source, which alone takes logins
    assert (await get_db(gateway, token, db["id"]))["status"] == "moving"
    assert await on_cluster(six.admin_dsn, db) == (True, True)  # a copy nobody can log into
    assert not await can_login(with_port(uri, five.port, six.port))
    assert await can_login(uri)
    # meanwhile the owner can neither delete nor rotate it: both would race the move
    for resp in (
        await gateway.delete(f"/v1/databases/{db['id']}", headers=bearer(token)),
        await gateway.post(f"/v1/databases/{db['id']}/rotate-credentials", headers=bearer(token)),
    ):
        assert_problem(resp, 409, "conflict")

    # "restart": a worker that finds the mover's pulse stopped rolls the move back
    with provisioner_process(stack, "worker", PROVISIONER_MOVE_STALE_SECONDS="1"):

        async def rolled_back() -> bool:
            now = await get_db(gateway, token, db["id"])
            return now["status"] == "ready" and await on_cluster(six.admin_dsn, db) == (
                False,
                False,
            )

        await wait_for(rolled_back, timeout=60)
    [failed, _] = await moves_of(gateway, admin, db["id"])
    assert failed["state"] == "failed" and failed["mode"] == "logical"
    assert (await get_db(gateway, token, db["id"]))["port"] == five.port
    assert await checksum(uri) == rows
    async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as c:
        await c.execute("INSERT INTO items (label) VALUES ('writable again')")
    assert await move_leftovers(six.admin_dsn) == [] and await move_leftovers(five.admin_dsn) == []
    assert await moved_events(stack, db["id"]) == 1  # only the first, finished move
    report = (await gateway.get("/v1/clusters/orphans", headers=bearer(admin))).json()
    assert all(db["username"] not in o["roles"] for o in report)


async def test_killed_after_the_switch_the_move_completes(gateway, stack) -> None:
    five, _ = await move_clusters(gateway, stack)
    admin = await admin_token(gateway, stack.env)
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token)
    home = stack.tenant_clusters[0]
    rows = await fill(db["uri"], 5000)
    async with active(gateway, admin, five.name):
        await _move_and_die(stack, "move_after_switch", db, five.name, admin)
    moved = await wait_moved(gateway, token, db["id"], five.port, timeout=5)
    assert moved["status"] == "ready"
    new_uri = with_port(db["uri"], home.port, five.port)
    assert await can_login(new_uri) and not await can_login(db["uri"])
    assert await checksum(new_uri) == rows
    assert await moved_events(stack, db["id"]) == 1
    # in its grace period the old copy belongs to the move: no orphan
    during = await gateway.get("/v1/clusters/orphans", headers=bearer(admin))
    assert during.status_code == 200, during.text
    assert all(db["username"] not in o["roles"] for o in during.json())

    # the stack's own worker drops the source once the grace period (3 s here) is over
    async def source_gone() -> bool:
        return await on_cluster(home.admin_dsn, db) == (False, False)

    await wait_for(source_gone, timeout=60)
    assert (await moves_of(gateway, admin, db["id"]))[0]["state"] == "done"
    report = (await gateway.get("/v1/clusters/orphans", headers=bearer(admin))).json()
    assert all(db["username"] not in o["roles"] for o in report)


async def test_a_database_being_deleted_is_not_moved(gateway, stack) -> None:
    five, _ = await move_clusters(gateway, stack)
    admin = await admin_token(gateway, stack.env)
    user = await signup(gateway)
    db = await create_db(gateway, user["access_token"])
    await gateway.delete(f"/v1/databases/{db['id']}", headers=bearer(user["access_token"]))
    async with active(gateway, admin, five.name):
        resp = await gateway.post(
            f"/v1/databases/{db['id']}/move", json={"cluster": five.name}, headers=bearer(admin)
        )
    assert resp.status_code in (404, 409), resp.text
    assert await moves_of(gateway, admin, db["id"]) == []
