"""Metrics and shutdown behaviour of the shared plumbing, against a real SQLite store (no broker: the Kafka side is
a recording fake). The ``ilt_*`` metrics live in one registry per process, so every assertion compares a value
before and after; the values are the ones ``GET /metrics`` would show."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from services.scheduling.bootstrap import build
from services.scheduling.settings import SchedulingSettings
from shared import metrics
from shared.contracts.base import Money
from shared.contracts.enrollment import LearnerEnrolled
from shared.contracts.finance import BudgetAllocated
from shared.contracts.scheduling import SessionCancelled, SessionScheduled
from shared.messaging.consumer import EventConsumer
from shared.messaging.envelope import Envelope
from shared.messaging.relay import OutboxRelay
from shared.metrics import REGISTRY
from shared.observability import observe_store
from shared.store.sqlite import SQLiteStore

NOW = datetime.now(UTC)
ENROLLED = LearnerEnrolled.event_type
CANCELLED = SessionCancelled.event_type
SCHEDULED = SessionScheduled.event_type
ALLOCATED = BudgetAllocated.event_type


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Snapshot:
    """Metric values at one moment; ``delta`` is what happened since."""

    def __init__(self, *series: tuple[str, dict[str, str]]) -> None:
        self.series = series
        self.before = [value(n, **labels) for n, labels in series]

    def delta(self) -> list[float]:
        return [value(n, **labels) - b for (n, labels), b in zip(self.series, self.before, strict=True)]


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def record(envelope: Envelope, offset: int, partition: int = 0) -> Record:
    return Record(envelope.topic, partition, offset, envelope.key.encode(), envelope.value(), envelope.headers())


class RecordingProducer:
    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []
        self.gate = gate
        self.calls = 0

    async def send_many(self, records) -> None:
        self.calls += 1
        self.sent.extend(records)  # on the wire; the acknowledgement may still be outstanding
        if self.gate is not None:
            await self.gate.wait()

    async def send(self, topic, key, value, headers) -> None:
        await self.send_many([(topic, key, value, headers)])


def enrolled(n: int, session_id: str = "s1") -> Envelope:
    return Envelope(data=LearnerEnrolled(occurred_at=NOW, enrollment_id=f"{session_id}-e{n}", session_id=session_id,
                                         learner_id=f"l{n}"))


def scheduled(session_id: str) -> Envelope:
    return Envelope(data=SessionScheduled(
        occurred_at=NOW, session_id=session_id, course_code="SWC", title="SWC", delivery="classroom",
        venue_id="room-1", time_zone="Europe/Berlin", capacity=10, cost_centre="CC1",
        slots=[{"starts_at": "2031-03-10T09:00:00+01:00", "ends_at": "2031-03-10T17:00:00+01:00"}]))


async def open_store(path) -> SQLiteStore:
    store = SQLiteStore(str(path))
    await store.open()
    return store


async def test_consumer_counts_outcomes_errors_latency_and_dead_letters(tmp_path) -> None:
    store = observe_store(await open_store(tmp_path / "consumer.db"))
    async def on_enrolled(uow, envelope: Envelope) -> None:
        seen = await uow.get("applied", envelope.data.enrollment_id) or {"times": 0}
        await uow.put("applied", envelope.data.enrollment_id, {"times": seen["times"] + 1})

    async def applied() -> dict[str, int]:
        return {key: doc["times"] for key, doc in await store.scan("applied")}

    async def on_scheduled(uow, envelope: Envelope) -> None:
        raise RuntimeError("the projection is broken")

    dead = RecordingProducer()
    consumer = EventConsumer(f"test-{uuid.uuid4()}", store, {LearnerEnrolled: on_enrolled, SessionScheduled: on_scheduled},
                             dead, "ilt.test.dead-letter", max_attempts=2, backoff_seconds=0)
    unknown = enrolled(9)
    unknown_headers = [(k, b"ilt.enrollment.learner-teleported.v1" if k == "ce_type" else v)
                       for k, v in unknown.headers()]
    first = [enrolled(0), enrolled(1), enrolled(2), Envelope(data=SessionCancelled(occurred_at=NOW, session_id="s1")),
             scheduled("s1")]
    records = [record(first[0], 0), record(first[1], 1),
               Record("ilt.enrollment.events", 0, 2, b"s1", unknown.value(), unknown_headers),
               record(first[2], 3), record(first[3], 4), record(first[4], 5)]
    snap = Snapshot(
        ("ilt_events_consumed_total", {"event_type": ENROLLED, "outcome": "applied"}),
        ("ilt_events_consumed_total", {"event_type": CANCELLED, "outcome": "ignored"}),
        ("ilt_events_consumed_total", {"event_type": ENROLLED, "outcome": "duplicate"}),
        ("ilt_handler_errors_total", {"event_type": SCHEDULED}),
        ("ilt_handler_duration_seconds_count", {"event_type": SCHEDULED}),
        ("ilt_dead_lettered_total", {"reason": "unknown_type"}),
        ("ilt_dead_lettered_total", {"reason": "handler_failed"}),
    )
    await consumer.process_batch(records)
    assert await applied() == {"s1-e0": 1, "s1-e1": 1, "s1-e2": 1}
    # the run [e2, cancelled, scheduled] failed once as a batch, then the scheduled event failed its 2 tries alone
    assert snap.delta() == [3, 1, 0, 3, 3, 1, 1]
    assert [dict(headers)["dlq_reason"] for _, _, _, headers in dead.sent] == [b"unknown_type", b"handler_failed"]

    # the same records again (a producer that re-sent them): nothing applied twice, each counted as a duplicate
    await consumer.process_batch([record(e, 10 + n) for n, e in enumerate(first[:3])])
    assert await applied() == {"s1-e0": 1, "s1-e1": 1, "s1-e2": 1}
    assert snap.delta()[:3] == [3, 1, 3]
    await store.close()


class FakeKafkaConsumer:
    def __init__(self, highwater: dict[TopicPartition, int | None], positions: dict[TopicPartition, int]) -> None:
        self._highwater = highwater
        self._positions = positions

    def assignment(self) -> set[TopicPartition]:
        return set(self._highwater)

    def highwater(self, tp: TopicPartition) -> int | None:
        if tp.partition == 9:
            raise AssertionError("Partition is not assigned")  # revoked meanwhile: left out, no failure
        return self._highwater[tp]

    async def position(self, tp: TopicPartition) -> int:
        return self._positions[tp]


async def test_lag_from_fetched_high_water_marks_and_stored_checkpoints(tmp_path) -> None:
    store = await open_store(tmp_path / "consumer.db")
    consumer = EventConsumer(f"test-{uuid.uuid4()}", store, {LearnerEnrolled: lambda uow, e: asyncio.sleep(0)},
                             RecordingProducer(), "ilt.test.dead-letter")
    assert await consumer.lag() == ({}, 0.0)  # not subscribed yet

    topic = "ilt.enrollment.events"
    stored_event = enrolled(0)
    await consumer.process_batch([record(stored_event, 4, partition=0)])  # checkpoint: offset 4 of partition 0
    p0, p1, p2, p9 = (TopicPartition(topic, p) for p in (0, 1, 2, 9))

    class Subscriber:
        consumer = FakeKafkaConsumer({p0: 10, p1: None, p2: 7, p9: 3}, {p2: 6})

    consumer.subscriber = Subscriber()
    behind, seconds = await consumer.lag()
    # p0: high-water 10, next to store 5 -> 5 behind; p1 not fetched yet: left out; p2: nothing stored, position 6
    assert behind == {(topic, 0): 5, (topic, 2): 1}
    assert seconds == pytest.approx(time.time() - stored_event.time.timestamp(), abs=2.0)

    Subscriber.consumer = FakeKafkaConsumer({p0: 5, p2: 6}, {p2: 6})
    assert await consumer.lag() == ({(topic, 0): 0, (topic, 2): 0}, 0.0)  # caught up: 0 seconds behind
    await store.close()


async def allocate(store: SQLiteStore, cost_centre: str, n: int) -> list[Envelope]:
    events = [Envelope(data=BudgetAllocated(occurred_at=NOW, allocation_id=f"{cost_centre}-{i}",
                                            cost_centre=cost_centre, period="2031",
                                            amount=Money(amount=Decimal("1.00"), currency="EUR")))
              for i in range(n)]
    async with store.transaction() as uow:
        await uow.append(f"budget-{cost_centre}", 0, events)
    return events


async def test_relay_stop_publishes_what_is_pending(tmp_path) -> None:
    store = await open_store(tmp_path / "producer.db")
    producer = RecordingProducer()
    relay = OutboxRelay(store, producer)  # never started: only stop() publishes
    snap = Snapshot(("ilt_events_published_total", {"event_type": ALLOCATED}))
    events = await allocate(store, "CC-flush", 3)
    assert await store.outbox_backlog() == 3
    await relay.stop()
    assert [dict(headers)["ce_id"].decode() for _, _, _, headers in producer.sent] == [e.id for e in events]
    assert await store.outbox_backlog() == 0
    assert snap.delta() == [3]
    await store.close()


async def test_relay_stop_lets_the_batch_in_flight_finish_instead_of_sending_it_twice(tmp_path) -> None:
    store = await open_store(tmp_path / "producer.db")
    gate = asyncio.Event()
    producer = RecordingProducer(gate)
    relay = OutboxRelay(store, producer, poll_seconds=0.05)
    store.on_commit.append(relay.wake)
    relay.start()
    events = await allocate(store, "CC-inflight", 2)
    deadline = time.monotonic() + 5
    while producer.calls == 0:  # the relay is waiting for the broker's acknowledgement
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    stopping = asyncio.create_task(relay.stop(flush_timeout=5))
    await asyncio.sleep(0.05)
    assert not stopping.done()
    gate.set()  # the broker acknowledges
    await stopping
    assert [dict(h)["ce_id"].decode() for _, _, _, h in producer.sent] == [e.id for e in events]  # once each
    assert await store.outbox_backlog() == 0
    await store.close()


async def test_http_metrics_and_stored_events_of_a_command(tmp_path, bearer) -> None:
    app = build(SchedulingSettings(store_url=f"sqlite:///{tmp_path / 'scheduling.db'}"))
    store = app.state.runtime.store
    await store.open()  # in process, without the lifespan: no relay runs, so the outbox keeps what is stored
    plan = {"course_code": "SWC", "title": "SWC", "delivery": "classroom", "venue_id": f"v-{uuid.uuid4()}",
            "time_zone": "Europe/Berlin", "capacity": 10, "cost_centre": "CC1",
            "slots": [{"starts_at": "2031-03-10T09:00:00", "ends_at": "2031-03-10T17:00:00"}]}
    snap = Snapshot(
        ("ilt_http_requests_total", {"method": "POST", "route": "/sessions", "status": "201"}),
        ("ilt_http_requests_total", {"method": "POST", "route": "/sessions", "status": "422"}),
        ("ilt_http_requests_total", {"method": "POST", "route": "/sessions/{session_id}/cancel", "status": "200"}),
        ("ilt_http_requests_total", {"method": "GET", "route": "unmatched", "status": "404"}),
        ("ilt_http_request_duration_seconds_count", {"method": "POST", "route": "/sessions"}),
        ("ilt_events_stored_total", {"event_type": SCHEDULED}),
        ("ilt_events_stored_total", {"event_type": CANCELLED}),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scheduling",
                                 headers=bearer("scheduler")) as client:
        created = await client.post("/sessions", json=plan)
        assert created.status_code == 201
        assert (await client.post("/sessions", json={**plan, "capacity": 0})).status_code == 422
        sid = created.json()["session_id"]
        assert (await client.post(f"/sessions/{sid}/cancel", json={"reason": "venue closed"})).status_code == 200
        assert (await client.get(f"/no-such-page/{sid}")).status_code == 404
        scraped = await client.get("/metrics")
    assert snap.delta() == [1, 1, 1, 1, 2, 1, 1]
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    lines = scraped.text.splitlines()
    assert "ilt_outbox_backlog 2.0" in lines  # scheduled + cancelled, stored and not published
    assert 'ilt_service{service="scheduling"} 1.0' in lines
    await store.close()


async def test_log_lines_written_while_an_event_is_handled_carry_its_ids(tmp_path, capsys) -> None:
    """In a batch and one by one: a handler's log line names the event (id, type, correlation and causation ids)
    without the handler binding anything; a line written after the handling does not."""
    import json

    import structlog

    from shared.logging import configure_logging

    configure_logging("reporting", fmt="json", level="INFO")
    try:
        store = await open_store(tmp_path / "logs.db")

        async def on_enrolled(uow, envelope: Envelope) -> None:
            structlog.get_logger().info("handler says hello")

        consumer = EventConsumer("test-logs", store, {LearnerEnrolled: on_enrolled}, RecordingProducer(),
                                 "ilt.test.dead-letter")
        events = [enrolled(0), enrolled(1).caused(LearnerEnrolled(
            occurred_at=NOW, enrollment_id="s1-e7", session_id="s1", learner_id="l7")), enrolled(2)]
        await consumer.process_batch([record(e, n) for n, e in enumerate(events[:2])])  # a run of two
        await consumer.process_batch([record(events[2], 2)])  # alone
        structlog.get_logger().info("after the handling")
        await store.close()
    finally:
        structlog.reset_defaults()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    said = [line for line in lines if line["event"] == "handler says hello"]
    assert [(line["event_id"], line["event_type"], line["correlation_id"], line.get("causation_id"))
            for line in said] == [(e.id, ENROLLED, e.correlation_id, e.causation_id) for e in events]
    after = next(line for line in lines if line["event"] == "after the handling")
    assert "event_id" not in after and after["service"] == "reporting"


def test_the_handler_histogram_is_exposed_like_a_prometheus_histogram() -> None:
    registry = CollectorRegistry()
    histogram = metrics.LoopHistogram("t_seconds", "test", "event_type", buckets=(0.01, 0.001), registry=registry)
    series = histogram.labels("a")
    for amount in (0.0005, 0.001, 0.002, 3.0):  # a value equal to a bound counts in that bucket (le)
        series.observe(amount)
    histogram.labels("b")
    samples = {(s.name, s.labels.get("event_type"), s.labels.get("le")): s.value
               for family in text_string_to_metric_families(metrics.generate_latest(registry).decode())
               for s in family.samples}
    assert [samples[("t_seconds_bucket", "a", le)] for le in ("0.001", "0.01", "+Inf")] == [2, 3, 4]
    assert samples[("t_seconds_count", "a", None)] == 4 and samples[("t_seconds_sum", "a", None)] == 3.0035
    assert samples[("t_seconds_count", "b", None)] == 0
