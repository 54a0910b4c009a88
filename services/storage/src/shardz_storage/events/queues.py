"""Declare the consumers' queues at migrate time, so the events published before the first
worker starts (a sign-up during a deploy) wait in them instead of being dropped."""

from __future__ import annotations

import aio_pika

from shardz_common.consumers import queue_arguments
from shardz_storage.config import StorageSettings
from shardz_storage.events.handlers import consumers

DELIVERY_LIMIT = 5  # ConsumerRunner's default: the arguments must match the worker's


async def declare(settings: StorageSettings) -> None:
    p = settings.platform
    connection = await aio_pika.connect(p.amqp_url, timeout=30)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            p.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        dlx = await channel.declare_exchange(
            p.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        for c in consumers(settings):
            dead = await channel.declare_queue(
                f"{c.name}.dead", durable=True, arguments={"x-queue-type": "quorum"}
            )
            await dead.bind(dlx, routing_key=c.name)
            queue = await channel.declare_queue(
                c.name,
                durable=True,
                arguments=queue_arguments(c.name, p.dead_letter_exchange, DELIVERY_LIMIT),
            )
            await queue.bind(exchange, routing_key=c.routing_key)
    finally:
        await connection.close()
