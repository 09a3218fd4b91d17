"""Helpers of the integration tests: wait for a condition, read one session's records off a topic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer


def poll(fetch: Callable[[], Any], until: Callable[[Any], bool], timeout: float = 20.0) -> Any:
    """Call ``fetch`` until ``until(value)`` holds (no fixed sleeps: a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not reached; last value: {value}")
        time.sleep(0.05)


def records_of(bootstrap: str, topic: str, key: str, count: int, timeout: float = 20.0) -> list[Any]:
    """The records of one session (Kafka key) on a topic, from the beginning, once ``count`` are there."""

    async def consume() -> list[Any]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        found: list[Any] = []
        try:
            deadline = time.monotonic() + timeout
            while len(found) < count and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=200)
                found += [r for rs in batches.values() for r in rs if r.key == key.encode()]
        finally:
            await consumer.stop()
        return sorted(found, key=lambda r: r.offset)  # one key -> one partition: offset order is event order

    return asyncio.run(consume())
