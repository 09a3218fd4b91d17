"""Outbox relay and idempotent consumer against the real broker and real SQLite files."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from faststream.kafka import KafkaBroker

from shared.contracts.enrollment import LearnerEnrolled
from shared.contracts.topics import ENROLLMENT_EVENTS
from shared.messaging.consumer import DEAD_LETTERS, EventConsumer
from shared.messaging.envelope import Envelope
from shared.messaging.kafka import Producer
from shared.messaging.relay import OutboxRelay
from shared.store.sqlite import SQLiteStore

pytestmark = pytest.mark.integration


def enrolled(session_id: str, n: int) -> Envelope:
    return Envelope(data=LearnerEnrolled(occurred_at=datetime.now(UTC), enrollment_id=f"e{n}",
                                         session_id=session_id, learner_id=f"l{n}"))


async def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)


async def test_outbox_to_idempotent_consumer_and_dead_letter(kafka, tmp_path) -> None:
    producer_store = SQLiteStore(str(tmp_path / "producer.db"))
    consumer_store = SQLiteStore(str(tmp_path / "consumer.db"))
    await producer_store.open()
    await consumer_store.open()
    session_id = f"s-{uuid.uuid4()}"
    async with producer_store.transaction() as uow:
        await uow.append(f"session-{session_id}", 0, [enrolled(session_id, n) for n in range(20)])
    producer = Producer(kafka.bootstrap_servers)
    relay = OutboxRelay(producer_store, producer)
    assert await relay.publish_pending() == 20
    assert await producer_store.outbox_backlog() == 0

    failures = {"e5": 2, "e7": 99}  # e5 fails twice then succeeds; e7 always fails -> dead letter

    async def on_enrolled(uow, envelope: Envelope) -> None:
        if envelope.data.session_id != session_id:  # the broker is shared with other tests
            return
        eid = envelope.data.enrollment_id
        if failures.get(eid, 0) > 0:
            failures[eid] -= 1
            raise RuntimeError(f"boom {eid}")
        order = await uow.get("order", "all") or {"ids": []}
        await uow.put("order", "all", {"ids": [*order["ids"], eid]})
        await uow.put("count", eid, {"n": 1})

    async def applied() -> list[str]:
        return ((await consumer_store.get("order", "all")) or {"ids": []})["ids"]

    group = f"test-{uuid.uuid4()}"
    consumer = EventConsumer(group, consumer_store, {LearnerEnrolled: on_enrolled}, producer,
                             "ilt.reporting.dead-letter", max_attempts=3, backoff_seconds=0.01)
    broker = KafkaBroker(kafka.bootstrap_servers)
    consumer.subscribe(broker, ENROLLMENT_EVENTS)
    await broker.start()
    try:
        order = {"ids": []}

        async def refresh() -> None:
            while True:
                order["ids"] = await applied()
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(refresh())
        await wait_until(lambda: consumer.stats.dead_lettered == 1 and len(order["ids"]) == 19)
        before = consumer.stats.skipped_duplicates
        # same events delivered again (a relay that crashed before marking them published): no double effect
        for entry in await _all_entries(producer_store):
            await producer.send(entry.topic, entry.key, entry.value, entry.headers)
        await wait_until(lambda: consumer.stats.skipped_duplicates >= before + 20)
        watcher.cancel()
    finally:
        await broker.stop()
        await producer.stop()
    assert await applied() == [f"e{n}" for n in range(20) if n != 7]  # in order within the session's partition
    assert len(await consumer_store.scan("count")) == 19
    dead = await consumer_store.scan(DEAD_LETTERS)
    assert len(dead) == 1 and dead[0][1]["reason"] == "handler_failed" and "boom e7" in dead[0][1]["error"]
    assert len(await consumer_store.scan(DEAD_LETTERS)) == 1


async def _all_entries(store: SQLiteStore):
    conn = store._w
    conn.execute("UPDATE published SET position = 0")  # as if nothing had been published
    return await store.pending_outbox(1000)
