"""Idempotent event consumer with bounded retries and a dead-letter topic.

For every record: decode the CloudEvent (or dead-letter it with the reason), then in ONE transaction claim the
event id in the inbox (skip if already processed), run the handler, and save the checkpoint. The Kafka offset
is committed only after that transaction (FastStream ``AckPolicy.NACK_ON_ERROR``: commit after the handler
returned, rewind and redeliver if it raised). A handler that keeps failing is retried with exponential backoff
``max_attempts`` times, then the record goes to the dead-letter topic with the error in its headers and the
consumer moves on. Only if even the dead-letter publish fails does the record stay uncommitted and come back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.contracts.base import IntegrationEvent
from shared.store.port import ConcurrencyError, Store, UnitOfWork

from .envelope import Envelope, UndecodableEvent, decode, header_map
from .kafka import Producer

log = structlog.get_logger()

Handler = Callable[[UnitOfWork, Envelope], Awaitable[None]]
MAX_ERROR_HEADER = 1000
DEAD_LETTERS = "dead-letters"  # document collection: one entry per dead-lettered record


class ConsumerStats:
    def __init__(self) -> None:
        self.processed = 0
        self.skipped_duplicates = 0
        self.dead_lettered = 0
        self.retries = 0
        self.last_event_time: datetime | None = None
        self.last_processed_at: float | None = None


class EventConsumer:
    """Applies events to one service's store through its handlers, effect-once."""

    def __init__(
        self,
        name: str,
        store: Store,
        handlers: dict[type[IntegrationEvent], Handler],
        dead_letter: Producer,
        dead_letter_topic: str,
        max_attempts: int = 5,
        backoff_seconds: float = 0.2,
        on_applied: Callable[[Envelope], None] | None = None,
    ) -> None:
        self.name = name
        self.store = store
        self.handlers = handlers
        self.dead_letter_producer = dead_letter
        self.dead_letter_topic = dead_letter_topic
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.on_applied = on_applied
        self.stats = ConsumerStats()

    async def process(
        self, value: bytes | None, headers: Any, topic: str, partition: int, offset: int, key: bytes | None = None
    ) -> None:
        try:
            envelope = decode(value, headers)
        except UndecodableEvent as exc:
            await self._dead_letter(value, headers, key, topic, partition, offset, exc.reason, exc.detail)
            return
        handler = self.handlers.get(type(envelope.data))
        bound = log.bind(event_id=envelope.id, event_type=envelope.type,
                         correlation_id=envelope.correlation_id, causation_id=envelope.causation_id)
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.store.transaction() as uow:
                    # every event is claimed, handled or not: the inbox is the complete record of what was seen
                    fresh = await uow.claim(self.name, envelope.id)
                    if fresh and handler is not None:
                        await handler(uow, envelope)
                    await uow.save_checkpoint(self.name, topic, partition, offset)
                if not fresh:
                    self.stats.skipped_duplicates += 1
                    bound.debug("duplicate event skipped")
                else:
                    self.stats.processed += 1
                    self.stats.last_event_time = envelope.time
                    self.stats.last_processed_at = time.time()
                    if handler is not None and self.on_applied is not None:
                        self.on_applied(envelope)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt >= self.max_attempts:
                    bound.error("handler failed, dead-lettering", attempts=attempt, error=repr(exc)[:300])
                    await self._dead_letter(
                        value, headers, key, topic, partition, offset, "handler_failed", f"{type(exc).__name__}: {exc}"
                    )
                    return
                self.stats.retries += 1
                delay = 0 if isinstance(exc, ConcurrencyError) else self.backoff_seconds * 2 ** (attempt - 1)
                bound.warning("handler failed, retrying", attempt=attempt, retry_in=delay, error=repr(exc)[:300])
                await asyncio.sleep(delay)

    async def _dead_letter(
        self, value: bytes | None, headers: Any, key: bytes | None, topic: str, partition: int, offset: int,
        reason: str, detail: str,
    ) -> None:
        dl_headers = [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in (headers or ())]
        dl_headers += [
            ("dlq_reason", reason.encode()),
            ("dlq_error", detail[:MAX_ERROR_HEADER].encode("utf-8", errors="replace")),
            ("dlq_consumer", self.name.encode()),
            ("dlq_original_topic", topic.encode()),
            ("dlq_original_partition", str(partition).encode()),
            ("dlq_original_offset", str(offset).encode()),
            ("dlq_failed_at", datetime.now(UTC).isoformat().encode()),
        ]
        # raises if the dead-letter topic is unreachable: the record is then not committed and comes back
        await self.dead_letter_producer.send(self.dead_letter_topic, key, value or b"", dl_headers)
        event_id = header_map(headers).get("ce_id") or ""
        async with self.store.transaction() as uow:
            if event_id:  # a redelivery of this record is skipped, not dead-lettered twice
                await uow.claim(self.name, event_id)
            await uow.put(DEAD_LETTERS, f"{topic}:{partition}:{offset}", {
                "event_id": event_id, "reason": reason, "error": detail[:MAX_ERROR_HEADER], "topic": topic,
                "partition": partition, "offset": offset, "dead_letter_topic": self.dead_letter_topic,
                "failed_at": datetime.now(UTC).isoformat(),
            })
            await uow.save_checkpoint(self.name, topic, partition, offset)
        self.stats.dead_lettered += 1
        log.warning("record dead-lettered", reason=reason, detail=detail[:300], topic=topic,
                    partition=partition, offset=offset)

    async def process_batch(self, records: Sequence[Any]) -> None:
        """Apply a fetched batch in as few transactions as possible, with the same outcome as one by one.

        Runs of decodable records are applied in one transaction (one inbox claim per event, one checkpoint per
        partition); an undecodable record is dead-lettered in its place in the order. If any handler of a run
        raises, that transaction is rolled back and the run is redone record by record, so only the failing
        record is retried and, in the end, dead-lettered."""
        run: list[tuple[Any, Envelope]] = []
        for record in records:
            try:
                run.append((record, decode(record.value, record.headers)))
            except UndecodableEvent as exc:
                await self._apply_run(run)
                run = []
                await self._dead_letter(record.value, record.headers, record.key, record.topic, record.partition,
                                        record.offset, exc.reason, exc.detail)
        await self._apply_run(run)

    async def _apply_run(self, run: list[tuple[Any, Envelope]]) -> None:
        if not run:
            return
        if len(run) == 1:
            record = run[0][0]
            await self.process(record.value, record.headers, record.topic, record.partition, record.offset, record.key)
            return
        applied: list[Envelope] = []
        duplicates = 0
        try:
            async with self.store.transaction() as uow:
                last: dict[tuple[str, int], int] = {}
                for record, envelope in run:
                    if await uow.claim(self.name, envelope.id):
                        handler = self.handlers.get(type(envelope.data))
                        if handler is not None:
                            await handler(uow, envelope)
                        applied.append(envelope)
                    else:
                        duplicates += 1
                    last[(record.topic, record.partition)] = record.offset
                for (topic, partition), offset in last.items():
                    await uow.save_checkpoint(self.name, topic, partition, offset)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - redo one by one: retries and dead letters per record
            log.info("batch rolled back, applying its records one by one", size=len(run), error=repr(exc)[:200])
            for record, _ in run:
                await self.process(record.value, record.headers, record.topic, record.partition, record.offset,
                                   record.key)
            return
        self.stats.processed += len(applied)
        self.stats.skipped_duplicates += duplicates
        if applied:
            self.stats.last_event_time = applied[-1].time
            self.stats.last_processed_at = time.time()
        if self.on_applied is not None:
            for envelope in applied:
                if type(envelope.data) in self.handlers:
                    self.on_applied(envelope)

    def subscribe(self, broker: KafkaBroker, *topics: str, max_records: int = 500, **options: Any) -> Any:
        """Register on a FastStream broker: one consumer group per service, explicit at-least-once acks.

        Batches of up to ``max_records`` are fetched; the offsets are committed only after the batch's state
        changes are stored (``NACK_ON_ERROR``: an exception rewinds every partition of the batch)."""

        async def raw_records(message: Any) -> Any:  # keep FastStream from parsing the payload for us
            return message.body

        @broker.subscriber(
            *topics,
            group_id=self.name,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            batch=True,
            max_records=max_records,
            decoder=raw_records,
            title=f"{self.name}-consumer",
            description=f"Events the {self.name} service applies (consumer group '{self.name}').",
            **options,
        )
        async def on_records(message: KafkaMessage) -> None:
            records = message.raw_message
            await self.process_batch(records if isinstance(records, tuple) else (records,))

        return on_records
