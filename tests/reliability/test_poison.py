"""Poison and strangers on one partition, between good events, against the real broker and the real consumer
(``shared.messaging.consumer.EventConsumer`` in process, its own topic of one partition and its own dead-letter topic):

malformed JSON, no ``ce_type``, an unknown ``ce_type``, a payload failing validation, a newer version than the
consumer knows (``...v9``), an oversized value (over ``MAX_EVENT_BYTES``) and an event whose handler keeps failing.
Each lands on the dead-letter topic with its reason and every original header; the consumer moves on at once (the
good events around the poison are applied within a second of each other), the good events are applied in partition
order, and the failing handler is tried a bounded number of times with growing pauses, never in a hot loop.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from faststream.kafka import KafkaBroker

from shared.contracts.enrollment import LearnerEnrolled
from shared.messaging.consumer import EventConsumer
from shared.messaging.envelope import MAX_EVENT_BYTES, Envelope
from shared.messaging.kafka import Producer, ensure_topics
from shared.store.sqlite import SQLiteStore

pytestmark = pytest.mark.integration
MAX_ATTEMPTS = 4
BACKOFF = 0.1


def enrolled(session_id: str, enrollment_id: str) -> Envelope:
    return Envelope(data=LearnerEnrolled(occurred_at=datetime.now(UTC), enrollment_id=enrollment_id,
                                         session_id=session_id, learner_id=f"learner-{enrollment_id}"))


def with_header(headers: list[tuple[str, bytes]], name: str, value: bytes | None) -> list[tuple[str, bytes]]:
    kept = [(k, v) for k, v in headers if k != name]
    return kept if value is None else [*kept, (name, value)]


async def test_poison_goes_to_the_dead_letter_topic_and_the_partition_moves_on_in_order(kafka, tmp_path,
                                                                                       report) -> None:
    servers = kafka.bootstrap_servers
    run = uuid.uuid4().hex[:8]
    topic, dead_letter_topic = f"ilt.reliability.poison-{run}", f"ilt.reliability.poison-{run}.dead-letter"
    await ensure_topics(servers, (topic, dead_letter_topic), 1)
    store = SQLiteStore(str(tmp_path / "consumer.db"))
    await store.open()
    producer = Producer(servers)
    session_id = f"s-{run}"
    applied_at: dict[str, float] = {}
    attempts: list[float] = []

    async def on_enrolled(uow: Any, envelope: Envelope) -> None:
        eid = envelope.data.enrollment_id
        if eid == "broken":
            attempts.append(time.monotonic())
            raise RuntimeError("projection bug")
        order = (await uow.get("order", session_id)) or {"ids": []}
        order["ids"].append(eid)
        await uow.put("order", session_id, order)
        applied_at[eid] = time.monotonic()

    consumer = EventConsumer(f"poison-{run}", store, {LearnerEnrolled: on_enrolled}, producer, dead_letter_topic,
                             max_attempts=MAX_ATTEMPTS, backoff_seconds=BACKOFF)
    broker = KafkaBroker(servers)
    consumer.subscribe(broker, topic)

    good = [enrolled(session_id, f"good-{n}") for n in range(6)]
    valid = enrolled(session_id, "template")
    headers, value = valid.headers(), valid.value()
    newer = LearnerEnrolled.event_type.rsplit(".v", 1)[0] + ".v9"
    poison: list[tuple[str, list[tuple[str, bytes]], bytes]] = [
        ("invalid_payload", with_header(headers, "ce_id", b"p-json"), b'{"occurred_at": "2030-01-0'),  # malformed
        ("missing_type", with_header(with_header(headers, "ce_id", b"p-notype"), "ce_type", None), value),
        ("unknown_type", with_header(with_header(headers, "ce_id", b"p-stranger"), "ce_type",
                                     b"com.example.unknown.v1"), value),
        ("invalid_payload", with_header(headers, "ce_id", b"p-invalid"),
         b'{"occurred_at": "2030-01-01T00:00:00Z", "enrollment_id": "", "session_id": 7}'),
        ("unknown_type", with_header(with_header(headers, "ce_id", b"p-newer"), "ce_type", newer.encode()), value),
        ("oversized", with_header(headers, "ce_id", b"p-big"),
         value[:-1] + b', "pad": "' + b"x" * (MAX_EVENT_BYTES + 1000) + b'"}'),
    ]
    broken = enrolled(session_id, "broken")
    # the partition: good, every poison with a good one after it, the failing handler, a good one last
    records: list[tuple[str, list[tuple[str, bytes]], bytes]] = [("good", good[0].headers(), good[0].value())]
    for n, item in enumerate(poison):
        records.append(item)
        if n % 2 == 1:
            records.append(("good", good[1 + n // 2].headers(), good[1 + n // 2].value()))
    records.append(("handler_failed", broken.headers(), broken.value()))
    records += [("good", e.headers(), e.value()) for e in good[4:]]
    await broker.start()
    try:
        for _, hdrs, val in records:
            await producer.send(topic, session_id.encode(), val, hdrs)
        deadline = time.monotonic() + 60
        while len(applied_at) < len(good) or consumer.stats.dead_lettered < len(poison) + 1:
            assert time.monotonic() < deadline, (applied_at, consumer.stats.dead_lettered)
            await asyncio.sleep(0.02)
    finally:
        await broker.stop()

    # the good events in partition order, each once
    order = (await store.get("order", session_id))["ids"]
    assert order == [e.data.enrollment_id for e in good]
    # no poison holds the partition up: between two good events around poison, less than a second
    stamps = [applied_at[e.data.enrollment_id] for e in good[:4]]
    assert all(b - a < 1.0 for a, b in zip(stamps, stamps[1:], strict=False)), stamps
    # the failing handler: a bounded number of tries (the batch's, then MAX_ATTEMPTS one by one) with growing pauses
    assert 1 <= len(attempts) <= MAX_ATTEMPTS + 1
    gaps = [b - a for a, b in zip(attempts[-MAX_ATTEMPTS:], attempts[-MAX_ATTEMPTS + 1:], strict=False)]
    assert all(gap >= BACKOFF * 2 ** k * 0.9 for k, gap in enumerate(gaps)), gaps

    # the dead-letter topic: each with its reason and every original header, in order
    reader = AIOKafkaConsumer(dead_letter_topic, bootstrap_servers=servers, auto_offset_reset="earliest",
                              enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024,
                              fetch_max_bytes=8 * 1024 * 1024)
    await reader.start()
    try:
        dead: list[Any] = []
        deadline = time.monotonic() + 30
        while len(dead) < len(poison) + 1 and time.monotonic() < deadline:
            for batch in (await reader.getmany(timeout_ms=500)).values():
                dead += batch
    finally:
        await reader.stop()
        await producer.stop()
    expected = [(reason, hdrs, val) for reason, hdrs, val in records if reason != "good"]
    assert len(dead) == len(expected)
    for record, (reason, hdrs, val) in zip(dead, expected, strict=True):
        got = dict(record.headers)
        assert got["dlq_reason"].decode() == reason, (got["dlq_reason"], reason)
        assert got["dlq_original_topic"].decode() == topic
        for name, header_value in hdrs:
            assert got[name] == header_value, name
        assert record.value == val and record.key == session_id.encode()
    await store.close()
    report(f"poison: {len(poison)} strangers + 1 failing handler dead-lettered with reason and headers "
           f"({', '.join(sorted({r for r, _, _ in expected}))}), good events: {len(order)} applied in order, "
           f"failing handler tried {len(attempts)} times over {attempts[-1] - attempts[0]:.2f} s, "
           f"lost: 0, duplicated: {len(order) - len(set(order))}")
