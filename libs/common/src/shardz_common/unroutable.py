"""Events that no queue was bound to when they were published.

A RabbitMQ policy (set by the deployment: `make dev`, compose's definitions, the Kubernetes
Policy resource) gives `platform.events` the alternate exchange `platform.unroutable`, whose
durable queue keeps such events instead of the broker dropping them. A policy, not an
exchange argument: redeclaring `platform.events` with new arguments fails with
PRECONDITION_FAILED on every broker that already has it.

`python -m shardz_common.unroutable` publishes what the queue holds to `platform.events`
again (once each; what is still unroutable comes back to the queue)."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import aio_pika

EXCHANGE = "platform.unroutable"
QUEUE = "platform.unroutable"
POLICY_NAME = "shardz-unroutable"
# what `rabbitmqctl set_policy` (and the management API) takes for `platform.events`
POLICY_PATTERN = r"^platform\.events$"
POLICY_DEFINITION = {"alternate-exchange": EXCHANGE}


async def declare_unroutable(channel: Any) -> Any:
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True)
    queue = await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    await queue.bind(exchange)
    return queue


async def republish(amqp_url: str, events_exchange: str = "platform.events") -> int:
    """Send every event the queue holds now back to `events_exchange`; returns how many."""
    connection = await aio_pika.connect(amqp_url, timeout=30)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await declare_unroutable(channel)
        target = await channel.get_exchange(events_exchange)
        waiting = queue.declaration_result.message_count or 0
        sent = 0
        for _ in range(waiting):  # a fixed count: re-unroutable ones come back to the tail
            message = await queue.get(fail=False, no_ack=False)
            if message is None:
                break
            await target.publish(
                aio_pika.Message(
                    message.body,
                    headers=message.headers,
                    content_type=message.content_type,
                    message_id=message.message_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=message.routing_key or "",
            )
            await message.ack()  # only once the broker confirmed the copy
            sent += 1
        return sent
    finally:
        await connection.close()


def main() -> None:
    url = os.environ.get("PLATFORM_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    sent = asyncio.run(
        republish(url, os.environ.get("PLATFORM_EVENTS_EXCHANGE", "platform.events"))
    )
    print(f"republished {sent} event(s) from {QUEUE}", file=sys.stderr)


if __name__ == "__main__":
    main()
