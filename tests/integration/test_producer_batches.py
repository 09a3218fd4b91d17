"""The relay's producer sends ready-made batches per partition: every record arrives, on the partition ``send``
would have chosen for its key, in the order given within each key."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from shared.messaging.kafka import Producer, ensure_topics


async def test_send_many_keeps_order_per_key_and_partition_of_key(kafka) -> None:
    topic = f"test.batches.{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka.bootstrap_servers, [topic], partitions=6)
    keys = [f"session-{k}".encode() for k in range(10)]
    records = [(topic, keys[i % 10], f'{{"n":{i},"pad":"{"x" * 400}"}}'.encode(), [("ce_id", str(i).encode())])
               for i in range(1000)]  # more than one batch per partition
    producer = Producer(kafka.bootstrap_servers)
    try:
        await producer.send_many(records)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen: dict[bytes, list[int]] = {}
    partition_of: dict[bytes, set[int]] = {}
    try:
        count = 0
        for _ in range(100):
            if count >= 1000:
                break
            for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
                for r in batch:
                    seen.setdefault(r.key, []).append(int(dict(r.headers)["ce_id"]))
                    partition_of.setdefault(r.key, set()).add(tp.partition)
                    count += 1
    finally:
        await consumer.stop()
    assert count == 1000
    partitioner = DefaultPartitioner()
    for k, key in enumerate(keys):
        assert seen[key] == list(range(k, 1000, 10))  # all of them, in the order given
        assert partition_of[key] == {partitioner(key, list(range(6)), list(range(6)))}
