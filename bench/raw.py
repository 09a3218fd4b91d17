"""The raw aiokafka ceiling: produce one by one, produce ready-made per-partition batches, consume with getmany.

Records are exactly what the pipeline puts on the wire (same key, value and CloudEvents headers as an enrollment's
``LearnerEnrolled``), so the ceiling and the pipeline move the same bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from shared.contracts.enrollment import AttendanceRecorded, LearnerEnrolled
from shared.contracts.scheduling import SessionScheduled
from shared.messaging.envelope import Envelope

Record = tuple[str, bytes, bytes, list[tuple[str, bytes]]]  # topic, key, value, headers
PARTITIONS = 6
NOW = datetime.now(UTC)


def event_id(seed: int, i: int) -> str:
    """A deterministic UUID-shaped id (cheap for a million events, reproducible from the seed)."""
    return f"{seed & 0xFFFFFFFF:08x}-0000-4000-8000-{i:012x}"


def session_plan(session_id: str, index: int, capacity: int, course: str) -> dict:
    """The scheduling body of one bench session (own venue and instructor: never a booking conflict)."""
    day = datetime.now(UTC).date().toordinal() + 60
    date = datetime.fromordinal(day).date().isoformat()
    end = datetime.fromordinal(day + 1).date().isoformat()
    return {
        "session_id": session_id, "course_code": course, "title": "Benchmark session", "delivery": "classroom",
        "venue_id": f"bench-room-{course}-{index}", "time_zone": "Europe/Berlin", "capacity": capacity,
        "cost_centre": "CC-BENCH", "instructor_ids": [f"bench-instructor-{course}-{index}"],
        "slots": [{"starts_at": f"{date}T09:00", "ends_at": f"{date}T17:00"},
                  {"starts_at": f"{end}T09:00", "ends_at": f"{end}T17:00"}],
        "planned_costs": [],
    }


def _wire(envelope: Envelope) -> Record:
    return envelope.topic, envelope.key.encode(), envelope.value(), envelope.headers()


def enrolled_record(seed: int, i: int, session_id: str) -> Record:
    """One ``LearnerEnrolled`` exactly as enrollment's relay publishes it."""
    data = LearnerEnrolled(occurred_at=NOW, enrollment_id=event_id(seed + 1, i), session_id=session_id,
                           learner_id=f"learner-{seed}-{i:09d}")
    return _wire(Envelope(data=data, id=event_id(seed, i), correlation_id=event_id(seed + 2, i)))


def history(seed: int, events: int, per_session: int = 500) -> Iterator[Record]:
    """A synthetic history for the rebuild: per session one ``SessionScheduled``, then enrollments, and one
    ``AttendanceRecorded`` for every tenth enrollment. Built from one real event of each type (the rest is the
    same bytes with other ids), so a million records are made in seconds."""
    plan = session_plan("SID", 0, per_session, "BENCH-REBUILD")
    offset = "+01:00"
    scheduled = SessionScheduled.model_validate({
        **plan, "occurred_at": NOW, "slots": [{k: v + offset for k, v in slot.items()} for slot in plan["slots"]],
    })
    n = 0
    session = 0
    while n < events:
        sid = f"rebuild-{seed}-{session:07d}"
        yield _wire(Envelope(data=scheduled.model_copy(update={"session_id": sid}), id=event_id(seed, n)))
        n += 1
        for k in range(per_session - 1):
            if n >= events:
                return
            if k % 10 == 9:
                data = AttendanceRecorded(occurred_at=NOW, enrollment_id=event_id(seed + 1, n - 1), session_id=sid,
                                          learner_id=f"learner-{seed}-{n - 1:09d}", status="attended")
                yield _wire(Envelope(data=data, id=event_id(seed, n)))
            else:
                yield enrolled_record(seed, n, sid)
            n += 1
        session += 1


async def ensure_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            await admin.create_topics([NewTopic(name=topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


def _producer(bootstrap: str) -> AIOKafkaProducer:
    # the relay's producer settings (acks=all, no idempotence); linger 5 ms as in the measured ceiling
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5,
                            request_timeout_ms=30000)


async def produce_one_by_one(bootstrap: str, topic: str, records: list[Record]) -> float:
    producer = _producer(bootstrap)
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, value=v, key=k, headers=h) for _, k, v, h in records]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def send_batched(producer: AIOKafkaProducer, records: Iterable[Record], topic: str | None = None) -> int:
    """Per-partition ``create_batch``/``send_batch`` (partition = the default partitioner of the key)."""
    partitioner = DefaultPartitioner()
    partitions: dict[str, list[int]] = {}
    open_batches: dict[tuple[str, int], object] = {}
    futures = []
    count = 0
    for rec_topic, key, value, headers in records:
        t = topic or rec_topic
        if t not in partitions:
            partitions[t] = sorted(await producer.partitions_for(t))
        p = partitioner(key, partitions[t], partitions[t])
        batch = open_batches.get((t, p))
        if batch is None:
            batch = open_batches[(t, p)] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:  # type: ignore[attr-defined]
            batch.close()  # type: ignore[attr-defined]
            futures.append(await producer.send_batch(batch, t, partition=p))
            batch = open_batches[(t, p)] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None, headers=headers)  # type: ignore[attr-defined]
        count += 1
        if len(futures) > 200:
            await asyncio.gather(*futures)
            futures = []
    for (t, p), batch in open_batches.items():
        batch.close()  # type: ignore[attr-defined]
        futures.append(await producer.send_batch(batch, t, partition=p))
    await asyncio.gather(*futures)
    return count


async def produce_batched(bootstrap: str, topic: str, records: list[Record]) -> float:
    producer = _producer(bootstrap)
    await producer.start()
    try:
        await producer.partitions_for(topic)
        started = time.perf_counter()
        await send_batched(producer, records, topic)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def produce_history(bootstrap: str, records: Iterable[Record]) -> int:
    producer = _producer(bootstrap)
    await producer.start()
    try:
        return await send_batched(producer, records)
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, expected: int) -> float:
    """Seconds from the first fetch to the last record (``getmany``, no group, from the earliest offset)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        seen = 0
        first: float | None = time.perf_counter()  # from the first fetch request (one fetch may hold everything)
        deadline = time.monotonic() + 120
        while seen < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10000)
            for records in batches.values():
                if records and first is None:
                    first = time.perf_counter()
                seen += len(records)
        if seen < expected:
            raise RuntimeError(f"raw consume saw {seen} of {expected} records")
        return time.perf_counter() - (first or time.perf_counter())
    finally:
        await consumer.stop()


@dataclass
class Ceiling:
    events: int
    value_bytes: int
    record_bytes: int
    produce_one_by_one: float  # events/s
    produce_batched: float
    consume: float


async def ceiling(bootstrap: str, events: int, seed: int) -> Ceiling:
    records = [enrolled_record(seed, i, f"raw-session-{i % 64}") for i in range(events)]
    one, batched = "bench.raw.one-by-one", "bench.raw.batched"
    for topic in (one, batched):
        await ensure_topic(bootstrap, topic)
    t_one = await produce_one_by_one(bootstrap, one, records)
    t_batched = await produce_batched(bootstrap, batched, records)
    t_consume = await consume(bootstrap, batched, events)
    value = len(records[0][2])
    size = value + len(records[0][1]) + sum(len(k) + len(v) for k, v in records[0][3])
    return Ceiling(events, value, size, events / t_one, events / t_batched, events / t_consume)


__all__ = ["Ceiling", "ceiling", "history", "produce_history", "session_plan", "SessionScheduled"]
