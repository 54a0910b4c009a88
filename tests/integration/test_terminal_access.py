"""Who may open a terminal on which database, and what ends a session."""

from __future__ import annotations

import asyncio
import uuid

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.integration.helpers import bearer, create_db, publish_event, signup, wait_for
from tests.integration.terminal_client import Term, ws_connect


async def closed_with(ws, timeout: float = 15) -> tuple[int, str]:
    """Read until the server closes; its close code and reason."""
    try:
        while True:
            message = await asyncio.wait_for(ws.recv(), timeout)
            assert '"type":"result"' not in message, message
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, "closed without a close frame"
        return exc.rcvd.code, exc.rcvd.reason


@pytest.fixture
async def owner(gateway):
    user = await signup(gateway)
    db = await create_db(gateway, user["access_token"])
    return user, db


async def test_a_database_of_another_user_closes_with_4404(stack, gateway, owner) -> None:
    user, db = owner
    other = await signup(gateway)
    for target in (db["id"], str(uuid.uuid4()), "not-a-uuid"):
        ws = await ws_connect(stack, target, other["access_token"])
        assert (await closed_with(ws))[0] == 4404
    # the owner gets in
    async with await Term.open(stack, db["id"], user["access_token"]):
        pass


async def test_bad_forged_or_missing_credentials_close_with_4401(stack, owner) -> None:
    user, db = owner
    good = user["access_token"]
    kid = jwt.get_unverified_header(good)["kid"]
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = jwt.encode(
        claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid}
    )
    for token in ("garbage", forged, "shz_" + "x" * 40):
        ws = await ws_connect(stack, db["id"], token)
        assert (await closed_with(ws))[0] == 4401, token
        # the same through the browser's first message
        ws = await ws_connect(stack, db["id"])
        await ws.send(f'{{"type": "auth", "token": "{token}"}}')
        assert (await closed_with(ws))[0] == 4401, token
    # a first message that is not auth, and silence, are refused too
    ws = await ws_connect(stack, db["id"])
    await ws.send('{"type": "query", "id": 1, "sql": "select 1"}')
    assert (await closed_with(ws))[0] == 4401
    ws = await ws_connect(stack, db["id"])
    assert (await closed_with(ws, timeout=15))[0] == 4401


async def test_a_browser_authenticates_by_message_from_the_dashboard_only(stack, owner) -> None:
    user, db = owner
    dashboard = f"http://{stack.host('dashboard')}:{stack.config.gateway_port}"
    ws = await ws_connect(stack, db["id"], origin=dashboard)
    term = Term(ws)
    await term.send({"type": "auth", "token": user["access_token"]})
    assert (await term.recv())["type"] == "ready"
    assert (await term.one("select current_user"))["rows"] == [[db["username"]]]
    await term.close()
    # a page on another site cannot open one with the user's cookies or token
    for origin in ("http://evil.example", f"http://dashboard.{stack.base_domain}.evil.example"):
        with pytest.raises(InvalidStatus) as refused:
            await ws_connect(stack, db["id"], user["access_token"], origin=origin)
        assert refused.value.response.status_code == 403


async def test_a_revoked_api_key_ends_its_sessions_and_opens_no_more(stack, gateway, owner) -> None:
    user, db = owner
    created = await gateway.post(
        "/v1/api-keys", json={"name": "cli"}, headers=bearer(user["access_token"])
    )
    key = created.json()
    term = await Term.open(stack, db["id"], key["key"])
    by_token = await Term.open(stack, db["id"], user["access_token"])
    assert (await term.one("select 1 as k"))["rows"] == [[1]]
    revoked = await gateway.delete(
        f"/v1/api-keys/{key['id']}", headers=bearer(user["access_token"])
    )
    assert revoked.status_code == 204
    code, reason = await closed_with(term.ws, timeout=10)
    assert code == 4403 and "revoked" in reason
    # a session opened with the user's token is not the key's: it goes on
    assert (await by_token.one("select 2 as t"))["rows"] == [[2]]
    await by_token.close()
    await asyncio.sleep(1.5)  # the key cache of every service lasts at most a second
    ws = await ws_connect(stack, db["id"], key["key"])
    assert (await closed_with(ws))[0] == 4401


async def test_deleting_the_database_closes_its_sessions(stack, gateway, owner) -> None:
    user, db = owner
    term = await Term.open(stack, db["id"], user["access_token"])
    other_db = await create_db(gateway, user["access_token"])
    other = await Term.open(stack, other_db["id"], user["access_token"])
    deleted = await gateway.delete(
        f"/v1/databases/{db['id']}", headers=bearer(user["access_token"])
    )
    assert deleted.status_code in (202, 204)
    code, reason = await closed_with(term.ws, timeout=10)
    assert code == 4403 and "deleted" in reason
    assert (await other.one("select 3 as still"))["rows"] == [[3]]
    await other.close()
    ws = await ws_connect(stack, db["id"], user["access_token"])
    assert (await closed_with(ws))[0] == 4404


async def test_the_session_cap_counts_every_terminal_process(stack, gateway) -> None:
    user = await signup(gateway)
    db = await create_db(gateway, user["access_token"])
    cap = 10  # TERMINAL_MAX_SESSIONS_PER_USER
    terms = [await Term.open(stack, db["id"], user["access_token"]) for _ in range(cap)]
    dsn = stack.config.database_dsn("terminal")
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        rows = await (
            await conn.execute(
                "SELECT DISTINCT process FROM sessions WHERE user_id = %s", (user["user"]["id"],)
            )
        ).fetchall()
    assert len(rows) == 2, "the gateway spreads sessions over both terminal processes"
    for _ in range(2):  # whichever process the gateway picks
        ws = await ws_connect(stack, db["id"], user["access_token"])
        assert (await closed_with(ws))[0] == 4429
    # another user is not affected, and a closed session frees its slot
    other = await signup(gateway)
    other_db = await create_db(gateway, other["access_token"])
    async with await Term.open(stack, other_db["id"], other["access_token"]):
        pass
    await terms.pop().close()

    async def reopened():
        try:
            return await Term.open(stack, db["id"], user["access_token"])
        except (AssertionError, ConnectionClosed):
            return None

    terms.append(await wait_for(reopened, timeout=10))
    for term in terms:
        await term.close()


async def test_the_terminal_survives_the_tenant_changing_its_password(stack, owner) -> None:
    user, db = owner
    async with await Term.open(stack, db["id"], user["access_token"]) as term:
        answer = await term.one("alter role current_user password 'chosen by the tenant'")
        assert answer["type"] == "result", answer
    # the platform's copy of the password is stale now; the terminal does not use it
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(db["uri"]).close()
    async with await Term.open(stack, db["id"], user["access_token"]) as term:
        assert (await term.one("select current_user"))["rows"] == [[db["username"]]]
        await term.query("create table after_change (x int)")
        owner_row = await term.one(
            "select tableowner from pg_tables where tablename = 'after_change'"
        )
        assert owner_row["rows"] == [[db["username"]]]
    # nor does taking the terminal's CONNECT away (the tenant owns the database): the next
    # session gets it back; the membership is out of the tenant's reach
    login = term_login(db)
    with psycopg.connect(
        host=db["host"],
        port=db["port"],
        dbname=db["database"],
        user=db["username"],
        password="chosen by the tenant",
        autocommit=True,
    ) as tenant:
        tenant.execute(f'REVOKE CONNECT ON DATABASE "{db["database"]}" FROM "{login}"')
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            tenant.execute(f'REVOKE "{db["username"]}" FROM "{login}"')
    async with await Term.open(stack, db["id"], user["access_token"]) as term:
        assert (await term.one("select current_user"))["rows"] == [[db["username"]]]


def term_login(db) -> str:
    return "shz_t_" + uuid.UUID(db["id"]).hex


async def test_suspending_the_account_closes_its_sessions(stack, gateway, owner) -> None:
    user, db = owner
    term = await Term.open(stack, db["id"], user["access_token"])
    bystander = await signup(gateway)
    bystander_db = await create_db(gateway, bystander["access_token"])
    other = await Term.open(stack, bystander_db["id"], bystander["access_token"])
    await publish_event(
        stack.env["PLATFORM_AMQP_URL"],
        "account.suspended",
        {"user_id": user["user"]["id"], "reason": "overdue"},
    )
    code, reason = await closed_with(term.ws, timeout=15)
    assert code == 4403 and "suspended" in reason
    # another account's session goes on
    assert (await other.one("select 4 as still"))["rows"] == [[4]]
    await other.close()
