"""The operator tools' work, as async functions (the CLI in ``ops.__main__`` parses arguments and prints).

- ``replay``: republish a producer's stored events (all, or since a store position or a time) to its topic, in the
  order they were stored and with their CloudEvents ids, e.g. after the broker lost its topics. Consumers skip
  what they already applied (their inbox), so replaying too much is harmless.
- ``rebuild_projections``: reporting's store holds nothing but projections of the three event topics. With
  reporting stopped, it deletes every projection document, reporting's inbox and checkpoints (dead-letter records
  are kept) and sets reporting's consumer-group offsets back to the start of every partition; started again,
  reporting projects everything on the topics from zero. If the topics no longer hold every event (retention, or
  a broker that lost them), ``replay`` the producers afterwards (their stores are the source of truth).
- ``dead_letters`` / ``show_dead_letter`` / ``redrive``: the dead-letter records a consumer stored (one document
  per record, with the reason) and the records themselves on its dead-letter topic (original value and headers
  plus the ``dlq_*`` headers). ``redrive`` republishes the original record (value, key, headers without ``dlq_*``)
  to its original topic and releases the consumer's inbox claim of the event, so the consumer applies it — for
  after a fix. An event the consumer had applied before it was dead-lettered (a broken duplicate) is not redriven.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.messaging.consumer import DEAD_LETTERS
from shared.messaging.kafka import Producer
from shared.store import Store

from . import stores

Progress = Callable[[int], None]
REPLAY_BATCH = 500


def parse_since(since: str | None) -> tuple[int, datetime | None]:
    """``--since``: a store position (an integer: events from that position on) or an ISO 8601 time (events
    recorded at or after it; without an offset it is UTC). Returns (after_position, since_time)."""
    if not since:
        return 0, None
    if since.isdigit():
        return max(int(since) - 1, 0), None
    try:
        at = datetime.fromisoformat(since)
    except ValueError:
        raise ValueError(f"--since {since!r} is neither a position (an integer) nor an ISO 8601 time") from None
    return 0, at if at.tzinfo else at.replace(tzinfo=UTC)


async def replay(store: Store, producer: Producer, *, since: str | None = None,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Publish the stored events (since a position or a time) in store order. Returns counts and positions."""
    after, since_time = parse_since(since)
    batch: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []
    sent = 0
    first = last = None

    async def flush() -> None:
        nonlocal sent
        if batch:
            await producer.send_many(batch)
            sent += len(batch)
            if progress:
                progress(len(batch))
            batch.clear()

    async for recorded in store.read_all(after_position=after):
        envelope = recorded.envelope
        if since_time is not None and envelope.time < since_time:
            continue
        first = recorded.position if first is None else first
        last = recorded.position
        batch.append((envelope.topic, envelope.key.encode(), envelope.value(), envelope.headers()))
        if len(batch) >= REPLAY_BATCH:
            await flush()
    await flush()
    return {"published": sent, "first_position": first, "last_position": last}


async def count_events(store: Store, since: str | None = None) -> int:
    after, since_time = parse_since(since)
    if not after and since_time is None:
        return await store.event_count()
    n = 0
    async for recorded in store.read_all(after_position=after):
        if since_time is None or recorded.envelope.time >= since_time:
            n += 1
    return n


async def reset_group_offsets(bootstrap_servers: str, group: str, topics: Iterable[str],
                              security: dict[str, Any] | None = None, timeout: float = 60.0) -> int:
    """Set consumer group ``group``'s committed offsets to 0 on every partition of ``topics``: joins the group
    (the service must be stopped, or it would share the partitions), waits for the assignment of every partition
    and commits 0 for each. Returns the number of partitions rewound."""
    topics = list(topics)
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap_servers, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest", **(security or {}))
    await consumer.start()
    try:
        await consumer.topics()  # fetches the metadata
        wanted = {TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()}
        deadline = time.monotonic() + timeout
        while not wanted <= consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {group} did not get every partition of {topics}: is the service "
                                   "still running? Stop it first.")
            await consumer.getmany(timeout_ms=200, max_records=1)  # joins and takes the assignment
        await consumer.commit({tp: 0 for tp in wanted})
        return len(wanted)
    finally:
        await consumer.stop()


async def rebuild_projections(store: Store, consumer: str, topics: Iterable[str], bootstrap_servers: str,
                              security: dict[str, Any] | None = None) -> dict[str, int]:
    """Reset a projection-only service (reporting) to nothing and rewind its consumer group to the start."""
    deleted = await stores.reset_consumer(store, consumer, keep_collections=(DEAD_LETTERS,))
    deleted["partitions_rewound"] = await reset_group_offsets(bootstrap_servers, consumer, topics, security)
    return deleted


# ---- dead letters -----------------------------------------------------------------------------------------------

async def dead_letters(store: Store) -> list[dict[str, Any]]:
    """The dead-letter documents of a consumer's store, oldest first, each with its ``id``."""
    docs = [{"id": key, **doc} for key, doc in await store.scan(DEAD_LETTERS)]
    return sorted(docs, key=lambda d: (d.get("failed_at", ""), d["id"]))


def _header(record: Any, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return None


def _origin(record: Any) -> str:
    return (f"{_header(record, 'dlq_original_topic')}:{_header(record, 'dlq_original_partition')}:"
            f"{_header(record, 'dlq_original_offset')}")


async def dead_letter_records(bootstrap_servers: str, topic: str, wanted: set[str],
                              security: dict[str, Any] | None = None, idle_seconds: float = 2.0,
                              timeout: float = 60.0) -> dict[str, Any]:
    """The records on a dead-letter topic whose origin (``topic:partition:offset``) is in ``wanted``, read from
    the beginning until all are found or nothing new came for ``idle_seconds``. The newest one per origin."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False, **(security or {}))
    await consumer.start()
    found: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and not wanted <= set(found):
            batches = await consumer.getmany(timeout_ms=200)
            records = [r for rs in batches.values() for r in rs]
            if records:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > idle_seconds:
                break
            for record in records:
                origin = _origin(record)
                if origin in wanted:
                    found[origin] = record
    finally:
        await consumer.stop()
    return found


def describe(record: Any) -> dict[str, Any]:
    """A dead-letter record for display: its headers (original and ``dlq_*``), key and value."""
    return {
        "dead_letter_offset": f"{record.topic}:{record.partition}:{record.offset}",
        "key": record.key.decode("utf-8", errors="replace") if record.key else None,
        "headers": {k: (v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v)
                    for k, v in record.headers or ()},
        "value": (record.value or b"").decode("utf-8", errors="replace"),
    }


async def redrive(store: Store, consumer: str, producer: Producer, bootstrap_servers: str, dead_letter_topic: str,
                  ids: Iterable[str] | None = None, security: dict[str, Any] | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Republish dead-lettered records (``ids``, or every one not redriven yet) to their original topics."""
    docs = {d["id"]: d for d in await dead_letters(store)}
    chosen = list(ids) if ids is not None else [i for i, d in docs.items() if not d.get("redriven_at")]
    unknown = [i for i in chosen if i not in docs]
    if unknown:
        raise KeyError(f"no dead letter {', '.join(unknown)} in this store")
    records = await dead_letter_records(bootstrap_servers, dead_letter_topic, set(chosen), security)
    outcome: dict[str, Any] = {"redriven": [], "not_found": [], "already_applied": []}
    for dl_id in chosen:
        doc = docs[dl_id]
        record = records.get(dl_id)
        if record is None:  # the dead-letter topic lost it (retention, a new broker): nothing to republish
            outcome["not_found"].append(dl_id)
            continue
        event_id = doc.get("event_id") or ""
        if event_id:
            claimed = await stores.claimed_at(store, consumer, event_id)
            if claimed and doc.get("failed_at") and claimed < _earlier(doc["failed_at"]):
                outcome["already_applied"].append(dl_id)  # applied before this (broken) copy came
                continue
        headers = [(k, v) for k, v in record.headers or () if not k.startswith("dlq_")]
        if event_id:
            await stores.release_claim(store, consumer, event_id)
        await producer.send(doc["topic"], record.key, record.value or b"", headers)
        async with store.transaction() as uow:
            await uow.put(DEAD_LETTERS, dl_id, {**{k: v for k, v in doc.items() if k != "id"},
                                                "redriven_at": datetime.now(UTC).isoformat()})
        outcome["redriven"].append(dl_id)
        if progress:
            progress(1)
    return outcome


def _earlier(iso: str, seconds: float = 1.0) -> str:
    """An ISO time a little before ``iso`` (the inbox claim of a dead letter is written right after it)."""
    try:
        return datetime.fromtimestamp(datetime.fromisoformat(iso).timestamp() - seconds, UTC).isoformat()
    except ValueError:
        return iso
