"""The event backbone against real PostgreSQL and RabbitMQ: outbox -> relay -> consumer.
Events are not lost to timing either: a worker that starts before the broker, a queue that
does not exist yet, a handler that keeps failing while its queue goes on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

import aio_pika
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.consumers import (
    Consumer,
    ConsumerRunner,
    consumer,
    declare_queues,
    queue_arguments,
)
from shardz_common.events import UserCreated, UserDeleted
from shardz_common.outbox import add_event
from shardz_common.relay import OutboxRelay
from shardz_common.testing.tcpproxy import TcpProxy
from shardz_common.unroutable import QUEUE as UNROUTABLE
from shardz_common.unroutable import declare_unroutable, republish
from shardz_devstack import rabbit


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


async def test_a_worker_started_before_the_broker_consumes_once_it_is_up(events_db, broker):
    db = events_db
    proxy = TcpProxy("127.0.0.1", 5672)
    await proxy.start()
    proxy.accepting = False  # the broker "is down": every connection is refused
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    runner = make_runner(db, broker, [recording_consumer(db, f"{broker.prefix}.consumer")], url)
    starting = asyncio.create_task(runner.start())
    relay = asyncio.create_task(
        OutboxRelay(db.engine, db.outbox, broker.url, broker.exchange).run()
    )
    try:
        await asyncio.sleep(2.0)
        assert not starting.done()  # still trying, not crashed
        proxy.accepting = True
        await asyncio.wait_for(starting, timeout=15)
        await write_events(db, 5)
        await wait_until(lambda: _at_least(db, 5))
    finally:
        relay.cancel()
        starting.cancel()
        await runner.close()
        await proxy.close()


async def test_a_failing_handler_does_not_hold_up_its_queue(events_db, broker):
    db = events_db
    name = f"{broker.prefix}.consumer"
    applied_at: dict[str, float] = {}
    poison = {uuid.uuid4(), uuid.uuid4()}  # as many as the queue has flushers

    @consumer(name, UserCreated)
    async def handler(event: UserCreated, session: AsyncSession) -> None:
        if event.user_id in poison:
            raise RuntimeError("this one always fails")
        await session.execute(db.applied.insert().values(event_id=str(event.user_id)))
        applied_at[str(event.user_id)] = time.monotonic()

    runner = make_runner(db, broker, [handler], delivery_limit=20)
    await runner.start()
    relay = asyncio.create_task(
        OutboxRelay(db.engine, db.outbox, broker.url, broker.exchange).run()
    )
    try:
        for bad in poison:
            async with db.sessions() as s, s.begin():
                add_event(s, db.outbox, UserCreated(user_id=bad, email="p@x.io"), source="test")
        await asyncio.sleep(4.0)  # the poison has failed a few times: its back-off grows
        sent_at = time.monotonic()
        ids = await write_events(db, 20, per_txn=1)
        await wait_until(lambda: _at_least(db, 20), timeout=10)
        slowest = max(applied_at[i] for i in ids) - sent_at
        assert slowest < 1.0, f"the others waited {slowest:.2f}s behind the failing one"
    finally:
        relay.cancel()
        await runner.close()


@pytest.fixture
async def vhost_of_today():
    """A vhost holding what a broker running today's release has: `platform.events` without
    arguments and a consumer queue with today's arguments."""
    name = f"shardz-t-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(rabbit.add_vhost, name)
    url = rabbit.amqp_url("127.0.0.1", 5672, name)
    conn = await aio_pika.connect(url)
    ch = await conn.channel()
    exchange = await ch.declare_exchange(
        "platform.events", aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await ch.declare_queue(
        "billing.user-created",
        durable=True,
        arguments=queue_arguments("billing.user-created", "platform.dlx", 5),
    )
    await queue.bind(exchange, routing_key="user.created")
    await conn.close()
    try:
        yield url
    finally:
        await asyncio.to_thread(rabbit.delete_vhost, name)


async def test_unroutable_events_are_kept_and_republished_once_a_queue_exists(
    vhost_of_today, events_db
):
    url = vhost_of_today
    db = events_db
    conn = await aio_pika.connect(url)
    ch = await conn.channel()
    # what `migrate` declares now; no PRECONDITION_FAILED against today's declarations
    await declare_unroutable(ch)

    @consumer("billing.user-created", UserCreated)
    async def same_as_today(event: UserCreated, session: AsyncSession) -> None: ...

    await declare_queues(ch, [same_as_today], "platform.events", "platform.dlx", 5)
    # a user.deleted that no service consumes yet, sent by the real relay (mandatory, confirmed)
    uid = uuid.uuid4()
    async with db.sessions() as s, s.begin():
        add_event(s, db.outbox, UserDeleted(user_id=uid), source="test")
    relay = asyncio.create_task(OutboxRelay(db.engine, db.outbox, url, "platform.events").run())
    try:
        kept = await ch.declare_queue(UNROUTABLE, passive=True)

        async def arrived() -> bool:
            q = await ch.declare_queue(UNROUTABLE, passive=True)
            return (q.declaration_result.message_count or 0) == 1

        await wait_until(arrived, timeout=10)
    finally:
        relay.cancel()
    assert await count(db, db.outbox) == 1
    # a later service binds its queue; the administrator republishes what waited
    later = await ch.declare_queue(
        "storage.user-deleted",
        durable=True,
        arguments=queue_arguments("storage.user-deleted", "platform.dlx", 5),
    )
    await later.bind("platform.events", routing_key="user.deleted")
    assert await republish(url) == 1
    message = await later.get(timeout=5)
    assert json.loads(message.body)["data"]["user_id"] == str(uid)
    await message.ack()
    kept = await ch.declare_queue(UNROUTABLE, passive=True)
    assert kept.declaration_result.message_count == 0
    await conn.close()
