"""Outbox relay: publishes stored events in the order they were stored, then marks them published.

Runs inside each producing service. Woken right after a commit that appended events (low latency) and polls as a
fallback. When the broker is away it retries with exponential backoff; nothing is marked published before the
broker acknowledged it, so a crash in between publishes the entry again (consumers are idempotent).

At shutdown (``stop``) the relay finishes the round it is in, then publishes whatever is still pending, so events
stored right before SIGTERM are on the topic when the process exits (within a deadline; what is left stays in the
outbox for the next start). Metrics: ``ilt_events_published_total`` per type, ``ilt_outbox_publish_failures_total``.
"""

from __future__ import annotations

import asyncio
import logging

import structlog

from shared import metrics
from shared.logging import header_fields
from shared.store.port import OutboxEntry, Store

from .kafka import Producer

log = structlog.get_logger()


class OutboxRelay:
    def __init__(
        self,
        store: Store,
        producer: Producer,
        batch_size: int = 2000,
        poll_seconds: float = 1.0,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self.store = store
        self.producer = producer
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.max_backoff = max_backoff_seconds
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()  # set by stop(): ends a backoff pause at once
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.failures = 0
        self.connected = False

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def publish_pending(self) -> int:
        """Publish one batch of pending entries. Returns how many were published."""
        entries = await self.store.pending_outbox(self.batch_size)
        if not entries:
            return 0
        await self.producer.send_many([(e.topic, e.key, e.value, e.headers) for e in entries])
        await self.store.mark_published([e.outbox_id for e in entries])
        self.published += len(entries)
        per_type: dict[str, int] = {}
        for e in entries:
            per_type[e.event_type] = per_type.get(e.event_type, 0) + 1
        for event_type, n in per_type.items():
            metrics.EVENTS_PUBLISHED.labels(event_type).inc(n)
        if log.is_enabled_for(logging.DEBUG):
            for e in entries:
                log.debug("event published", topic=e.topic, **_fields(e))
        return len(entries)

    async def _run(self) -> None:
        backoff = 0.1
        while not self._stopping:
            # cleared before the round, not after it: a commit during the round wakes the next wait at once
            # (cleared after it, that wake-up was lost and its events waited for the poll, up to a second)
            self._wake.clear()
            try:
                sent = await self.publish_pending()
                self.connected = True
                backoff = 0.1
                if sent:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker away, timeout...: retry later, never drop
                self.failures += 1
                self.connected = False
                metrics.OUTBOX_FAILURES.inc()
                log.warning("outbox relay cannot publish, will retry", error=repr(exc)[:300], retry_in=backoff)
                try:
                    await asyncio.wait_for(self._stopped.wait(), timeout=backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, self.max_backoff)
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            except TimeoutError:
                pass

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Stop after publishing what is pending (within ``flush_timeout``); what is left stays in the outbox.

        The running round is not cancelled (a batch the broker is acknowledging would be sent twice): the loop
        sees the stop flag and ends; only if it does not within the deadline is it cancelled."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + flush_timeout
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=flush_timeout)
            if not done:
                self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        flushed = 0
        try:
            async with asyncio.timeout_at(deadline):
                while sent := await self.publish_pending():
                    flushed += sent
        except Exception as exc:  # noqa: BLE001 - incl. the deadline: the rest is published after a restart
            log.warning("outbox not fully flushed at shutdown; it will be published after restart",
                        error=repr(exc)[:300], flushed=flushed)
            return
        log.info("outbox flushed", published_at_stop=flushed, published_total=self.published)


def _fields(entry: OutboxEntry) -> dict[str, str]:
    return {"event_id": entry.event_id, "event_type": entry.event_type, **header_fields(entry.headers)}
