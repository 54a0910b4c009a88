"""The event backbone against real PostgreSQL and RabbitMQ: outbox -> relay -> consumer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

import aio_pika
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.consumers import Consumer, ConsumerRunner, consumer
from shardz_common.events import UserCreated
from shardz_common.outbox import add_event
from shardz_common.relay import OutboxRelay
from shardz_common.testing.tcpproxy import TcpProxy


def make_runner(db, broker, consumers, url=None, delivery_limit=5):
    return ConsumerRunner(
        consumers,
        db.sessions,
        db.inbox,
        amqp_url=url or broker.url,
        exchange=broker.exchange,
        dead_letter_exchange=broker.dlx,
        delivery_limit=delivery_limit,
    )


def recording_consumer(db, name) -> Consumer[UserCreated]:
    @consumer(name, UserCreated)
    async def record(event: UserCreated, session: AsyncSession) -> None:
        await session.execute(db.applied.insert().values(event_id=str(event.user_id)))

    return record


async def write_events(db, n: int, per_txn: int = 50) -> list[str]:
    ids = []
    for start in range(0, n, per_txn):
        async with db.sessions() as s, s.begin():
            for _ in range(min(per_txn, n - start)):
                uid = uuid.uuid4()
                add_event(
                    s, db.outbox, UserCreated(user_id=uid, email=f"{uid}@x.io"), source="test"
                )
                ids.append(str(uid))
    return ids


async def dead_letter(channel, queue: str, timeout: float):
    """The first message in `<queue>.dead`, or None after `timeout` seconds."""
    dead = await channel.declare_queue(
        f"{queue}.dead", durable=True, arguments={"x-queue-type": "quorum"}
    )
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        message = await dead.get(fail=False)
        if message:
            return message
        await asyncio.sleep(0.05)
    return None


async def count(db, table) -> int:
    async with db.sessions() as s:
        return (await s.execute(select(func.count()).select_from(table))).scalar_one()


async def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)


async def test_committed_event_reaches_consumer_and_rolled_back_one_does_not(events_db, broker):
    db = events_db
    runner = make_runner(db, broker, [recording_consumer(db, f"{broker.prefix}.consumer")])
    await runner.start()
    relay = asyncio.create_task(
        OutboxRelay(db.engine, db.outbox, broker.url, broker.exchange).run()
    )
    try:
        with contextlib.suppress(RuntimeError):
            async with db.sessions() as s, s.begin():
                add_event(
                    s, db.outbox, UserCreated(user_id=uuid.uuid4(), email="no@x.io"), source="test"
                )
                raise RuntimeError("business rule failed: nothing may be published")
        [uid] = await write_events(db, 1)
        await wait_until(lambda: _applied(db, uid))
        assert await count(db, db.outbox) == 1  # the rolled-back event was never written
        assert await count(db, db.applied) == 1
    finally:
        relay.cancel()
        await runner.close()


async def _applied(db, uid: str) -> bool:
    async with db.sessions() as s:
        q = select(func.count()).select_from(db.applied).where(db.applied.c.event_id == uid)
        return (await s.execute(q)).scalar_one() == 1


async def test_broker_connection_cut_mid_stream_loses_none_and_applies_none_twice(
    events_db, broker
):
    db = events_db
    proxy = TcpProxy("127.0.0.1", 5672)
    await proxy.start()
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    runner = make_runner(db, broker, [recording_consumer(db, f"{broker.prefix}.consumer")], url)
    await runner.start()
    relay = asyncio.create_task(
        OutboxRelay(db.engine, db.outbox, url, broker.exchange, batch_size=100).run()
    )
    try:
        writer = asyncio.create_task(write_events(db, 1000, per_txn=20))
        await wait_until(lambda: _at_least(db, 200))
        proxy.accepting = False
        proxy.cut()  # both the relay's and the consumers' connections drop mid-stream
        assert await count(db, db.applied) < 1000  # the cut really lands mid-stream
        await asyncio.sleep(1.5)
        proxy.accepting = True
        ids = await writer
        await wait_until(lambda: _at_least(db, 1000), timeout=90)
        await asyncio.sleep(1.0)  # let any redelivery arrive before counting
        async with db.sessions() as s:
            applied = (await s.execute(select(db.applied.c.event_id))).scalars().all()
            outbox_ids = set((await s.execute(select(db.outbox.c.id))).scalars().all())
            inbox_ids = set((await s.execute(select(db.inbox.c.event_id))).scalars().all())
            unsent = (
                await s.execute(
                    select(func.count()).select_from(db.outbox).where(db.outbox.c.sent_at.is_(None))
                )
            ).scalar_one()
        assert len(applied) == 1000 and set(applied) == set(ids)  # none lost, none twice
        assert {str(i) for i in outbox_ids} == inbox_ids
        assert unsent == 0
    finally:
        relay.cancel()
        await runner.close()
        await proxy.close()


async def _at_least(db, n: int) -> bool:
    return await count(db, db.applied) >= n


async def test_failing_handler_ends_in_dead_letter_queue_not_a_loop(events_db, broker):
    db = events_db
    attempts = 0
    name = f"{broker.prefix}.failing"

    @consumer(name, UserCreated)
    async def always_fails(event: UserCreated, session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("handler bug")

    runner = make_runner(db, broker, [always_fails], delivery_limit=2)
    await runner.start()
    relay = asyncio.create_task(
        OutboxRelay(db.engine, db.outbox, broker.url, broker.exchange).run()
    )
    try:
        [uid] = await write_events(db, 1)
        conn = await aio_pika.connect(broker.url)
        ch = await conn.channel()
        message = await dead_letter(ch, name, timeout=10)
        assert message is not None, "the poison event was dropped instead of dead-lettered"
        assert json.loads(message.body)["data"]["user_id"] == uid
        await message.ack()
        seen = attempts
        await asyncio.sleep(1.0)
        assert attempts == seen <= 3  # delivery limit 2: bounded retries, then it stops
        assert await count(db, db.inbox) == 0  # nothing half-applied
        await conn.close()
    finally:
        relay.cancel()
        await runner.close()


async def test_redelivered_event_id_applies_once_and_malformed_goes_to_dead_letters(
    events_db, broker
):
    db = events_db
    name = f"{broker.prefix}.consumer"
    runner = make_runner(db, broker, [recording_consumer(db, name)])
    await runner.start()
    conn = await aio_pika.connect(broker.url)
    ch = await conn.channel()
    ex = await ch.get_exchange(broker.exchange)
    uid = str(uuid.uuid4())
    body = json.dumps(
        {
            "specversion": "1.0",
            "id": "evt-1",
            "source": "test",
            "type": "user.created",
            "data": {"user_id": uid, "email": "a@b.io"},
        }
    ).encode()
    try:
        for _ in range(3):
            await ex.publish(aio_pika.Message(body), routing_key="user.created")
        await ex.publish(aio_pika.Message(b"{not json"), routing_key="user.created")
        await wait_until(lambda: _applied(db, uid))
        got = await dead_letter(ch, name, timeout=5)
        assert got is not None and got.body == b"{not json"
        await got.ack()
        await asyncio.sleep(0.3)
        assert await count(db, db.applied) == 1
    finally:
        await conn.close()
        await runner.close()


async def test_a_savepoint_rollback_drops_only_the_events_staged_inside_it(events_db):
    def stage(s: AsyncSession) -> str:
        uid = uuid.uuid4()
        add_event(s, events_db.outbox, UserCreated(user_id=uid, email=f"{uid}@x.io"), source="t")
        return str(uid)

    async with events_db.sessions() as s, s.begin():
        before = stage(s)
        with contextlib.suppress(RuntimeError):
            async with s.begin_nested():
                inside = stage(s)
                async with s.begin_nested():
                    deeper = stage(s)
                raise RuntimeError("the savepoint rolls back")
        async with s.begin_nested():
            kept_inside = stage(s)  # a savepoint that is released keeps its events
        after = stage(s)
    async with events_db.sessions() as s:
        bodies = (await s.execute(select(events_db.outbox.c.body))).scalars().all()
    staged = {
        uid for uid in (before, inside, deeper, kept_inside, after) if any(uid in b for b in bodies)
    }
    assert staged == {before, kept_inside, after}
    assert len(bodies) == 3
