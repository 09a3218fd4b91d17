"""Kafka client helpers: a lazily started producer and explicit topic creation.

Never relies on the idempotent producer or on transactions: delivery guarantees come from the outbox (at least
once, in order per key) and idempotent consumers (effect once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

from shared.contracts.topics import ALL_TOPICS, DEFAULT_PARTITIONS

_PARTITIONER = DefaultPartitioner()  # what AIOKafkaProducer uses unless told otherwise


class Producer:
    """One aiokafka producer per process, started on first use and restarted after a failure."""

    def __init__(self, bootstrap_servers: str, security: dict[str, Any] | None = None, **options: Any) -> None:
        self._bootstrap = bootstrap_servers
        self._security = security or {}
        self._options = {"acks": "all", "enable_idempotence": False, "linger_ms": 2, "request_timeout_ms": 10000}
        self._options.update(options)
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ensure(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, **self._security, **self._options)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def send_many(self, records: Sequence[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]]) -> None:
        """Send (topic, key, value, headers) records and wait until the broker acknowledged every one.

        Records with the same key go to the same partition in the order given."""
        producer = await self._ensure()
        try:
            if len(records) > 1 and all(key is not None for _, key, _, _ in records):
                await self._send_batched(producer, records)
            else:
                futures = [
                    await producer.send(topic, value=value, key=key, headers=headers)
                    for topic, key, value, headers in records
                ]
                await asyncio.gather(*futures)
        except BaseException:
            await self.reset()
            raise

    async def _send_batched(
        self, producer: AIOKafkaProducer, records: Sequence[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]]
    ) -> None:
        """Ready-made batches per partition (``create_batch``/``send_batch``): about four times the records per
        second of ``send`` one by one. The partition is the one ``send`` would choose (the default partitioner,
        murmur2 of the key over all partitions), records keep their order within a partition (appended in order,
        and aiokafka keeps at most one batch per partition in flight), and every batch is awaited."""
        futures = []
        open_batches: dict[tuple[str, int], Any] = {}
        partitions: dict[str, list[int]] = {}
        for topic, key, value, headers in records:
            if topic not in partitions:
                partitions[topic] = sorted(await producer.partitions_for(topic))
            partition = _PARTITIONER(key, partitions[topic], partitions[topic])
            batch = open_batches.get((topic, partition))
            if batch is None:
                batch = open_batches[(topic, partition)] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:  # full
                batch.close()
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = open_batches[(topic, partition)] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    raise ValueError(f"a record of {len(value)} bytes does not fit in a batch")
        for (topic, partition), batch in open_batches.items():
            batch.close()
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)

    async def send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        await self.send_many([(topic, key, value, headers)])

    async def reset(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), timeout=5)
            except Exception:  # noqa: BLE001 - a broken producer is dropped either way
                pass

    async def stop(self) -> None:
        await self.reset()


async def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str] = ALL_TOPICS,
    partitions: int = DEFAULT_PARTITIONS,
    replication_factor: int = 1,
    security: dict[str, Any] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet (explicitly, before anything produces). Returns those created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **(security or {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if t not in existing]
        if wanted:
            try:
                await admin.create_topics(
                    [NewTopic(name=t, num_partitions=partitions, replication_factor=replication_factor) for t in wanted]
                )
            except TopicAlreadyExistsError:
                pass
        return wanted
    finally:
        await admin.close()


async def missing_topics(bootstrap_servers: str, topics: Iterable[str], security: dict[str, Any] | None = None) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000, **(security or {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        return [t for t in topics if t not in existing]
    finally:
        await admin.close()
