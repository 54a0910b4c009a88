"""Watch the event exchange from a test: an exclusive queue that collects CloudEvents."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage


class EventProbe:
    def __init__(self, amqp_url: str, exchange: str = "platform.events", keys: str = "#") -> None:
        self.amqp_url = amqp_url
        self.exchange = exchange
        self.keys = keys
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    async def __aenter__(self) -> EventProbe:
        self.connection = await aio_pika.connect_robust(self.amqp_url)
        channel = await self.connection.channel()
        exchange = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=self.keys)
        await queue.consume(self._on_message, no_ack=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.events.append(json.loads(message.body))
        self._changed.set()

    async def wait_for(
        self,
        type_: str,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """The first event of `type_` whose CloudEvent matches `where`."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if ev.get("type") == type_ and where(ev):
                    return ev
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [e.get("type") for e in self.events]
                raise TimeoutError(f"no {type_} event within {timeout}s; saw {seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
