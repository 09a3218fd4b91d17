"""Running the services as an operator does: metrics, logs, readiness and SIGTERM, against processes on the real
broker (scheduling and reporting: the template producer and the consumer of every topic).

The broker is shared by the whole test session and reporting's consumer group is always ``reporting``, so other
tests' events may still arrive when a test starts: each test first waits until reporting is caught up (its own
``ilt_projection_lag_events`` all 0 and ``/status`` unchanged), then compares metric values before and after, and
uses ids of its own run. No fixed sleeps: everything polls with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faststream.kafka import KafkaBroker
from prometheus_client.parser import text_string_to_metric_families

from devstack.broker import EmbeddedBroker, free_port
from devstack.stack import ServiceProcess, Stack
from shared.contracts.base import Money
from shared.contracts.enrollment import LearnerEnrolled
from shared.contracts.finance import BudgetAllocated
from shared.contracts.scheduling import SessionCancelled, SessionScheduled
from shared.contracts.topics import FINANCE_EVENTS, SCHEDULING_EVENTS
from shared.messaging.consumer import EventConsumer
from shared.messaging.envelope import Envelope
from shared.messaging.kafka import Producer
from shared.store.sqlite import SQLiteStore

pytestmark = pytest.mark.integration

TIMEOUT = 60.0
SCHEDULED = SessionScheduled.event_type
CANCELLED = SessionCancelled.event_type
ALLOCATED = BudgetAllocated.event_type
T = TypeVar("T")


# ----- helpers -----------------------------------------------------------------------------------------------------

def wait_for(what: str, probe: Callable[[], T], timeout: float = TIMEOUT, poll: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout}s (last: {result!r})")
        time.sleep(poll)


def scrape_until(what: str, url: str, check: Callable[[Metrics], bool], timeout: float = TIMEOUT) -> Metrics:
    """Scrape ``url`` until ``check`` holds; returns that scrape."""
    return wait_for(what, lambda: (lambda scraped: scraped if check(scraped) else None)(scrape(url)), timeout)


Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Metrics:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def metric(scraped: Metrics, name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def series(scraped: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in scraped.items() if n == name}


def status(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/status", timeout=10).json()


def settle(url: str) -> dict[str, Any]:
    """Until the consumer has stored everything on its partitions (lag 0 everywhere) and stays put."""
    previous: list[dict[str, Any]] = []

    def quiet() -> dict[str, Any] | None:
        lag = series(scrape(url), "ilt_projection_lag_events")
        now = status(url)
        settled = bool(lag) and not any(lag.values()) and previous and previous[-1] == now
        previous.append(now)
        return now if settled else None

    return wait_for("consumer caught up", quiet, poll=0.2)


def log_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a service's log, each parsed as JSON (fails on a line that is not)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def record(envelope: Envelope) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    return envelope.topic, envelope.key.encode(), envelope.value(), envelope.headers()


def publish(servers: str, records: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]]) -> None:
    async def send() -> None:
        producer = Producer(servers)
        try:
            await producer.send_many(records)
        finally:
            await producer.stop()

    asyncio.run(send())


def records_on(servers: str, topic: str, wanted: Callable[[dict[str, bytes]], bool], count: int) -> list[Any]:
    """Read ``topic`` from the beginning until ``count`` records whose headers satisfy ``wanted`` are found."""
    async def scan() -> list[Any]:
        consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer.topics()
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            found: list[Any] = []
            deadline = time.monotonic() + TIMEOUT
            while len(found) < count and time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    found += [r for r in batch if wanted(dict(r.headers))]
            return found
        finally:
            await consumer.stop()

    return asyncio.run(scan())


def plan(run: str, n: int) -> dict[str, Any]:
    year = 2100 + int(run[:4], 16) % 99  # a far-away year no other test uses (scheduling takes 1970-2199)
    return {"course_code": f"OPS-{run}", "title": "Operations", "delivery": "classroom", "venue_id": f"v-{run}-{n}",
            "time_zone": "Europe/Berlin", "capacity": 10, "cost_centre": f"cc-{run}",
            "slots": [{"starts_at": f"{year}-03-10T09:00:00", "ends_at": f"{year}-03-10T17:00:00"}]}


def allocation(cost_centre: str, period: str) -> Envelope:
    return Envelope(data=BudgetAllocated(occurred_at=datetime.now(UTC), allocation_id=str(uuid.uuid4()),
                                         cost_centre=cost_centre, period=period,
                                         amount=Money(amount=Decimal("1.00"), currency="EUR")))


def reader() -> dict[str, str]:
    """A reader's Authorization header: the suite's tokens (ILT_API_TOKENS), which devstack.stack.Stack hands on."""
    from devstack.stack import role_tokens

    return {"Authorization": f"Bearer {role_tokens(os.environ['ILT_API_TOKENS'])['reader']}"}


def allocated(url: str, cost_centre: str, period: str) -> Decimal | None:
    response = httpx.get(f"{url}/budgets/{cost_centre}", params={"period": period}, timeout=10, headers=reader())
    if response.status_code == 404:
        return None
    lines = response.json()["budgets"]
    return Decimal(lines[0]["allocated"]) if lines else None


# ----- metrics and logs --------------------------------------------------------------------------------------------

def test_metrics_and_logs_of_running_services(kafka, tmp_path) -> None:
    servers = kafka.bootstrap_servers
    run = uuid.uuid4().hex[:8]
    with Stack(tmp_path, services=["scheduling", "reporting"], bootstrap_servers=servers,
               extra_env={"LOG_LEVEL": "DEBUG"}) as stack:
        sched, rep = stack.url("scheduling"), stack.url("reporting")
        for url, checks in ((sched, {"store", "broker", "consumer"}), (rep, {"store", "broker", "consumer"})):
            ready = httpx.get(f"{url}/readyz", timeout=10)
            assert ready.status_code == 200
            assert ready.json() == {"ready": True, "checks": dict.fromkeys(checks, "ok")}
        settle(rep)
        s0, r0 = scrape(sched), scrape(rep)

        # commands: 3 sessions (the first joins a correlation chain), 1 cancellation, 1 invalid request
        correlation = f"ops-{run}-chain"
        with httpx.Client(timeout=30, headers=stack.headers()) as http:
            sessions = []
            for n in range(3):
                headers = {"X-Correlation-Id": correlation} if n == 0 else {}
                created = http.post(f"{sched}/sessions", json=plan(run, n), headers=headers)
                assert created.status_code == 201, created.text
                sessions.append(created.json()["session_id"])
            assert http.post(f"{sched}/sessions/{sessions[2]}/cancel", json={"reason": "venue closed"}).status_code == 200
            assert http.post(f"{sched}/sessions", json={**plan(run, 9), "capacity": 0}).status_code == 422

        def consumed(scraped: Metrics, event_type: str, outcome: str) -> float:
            return metric(scraped, "ilt_events_consumed_total", event_type=event_type, outcome=outcome) - metric(
                r0, "ilt_events_consumed_total", event_type=event_type, outcome=outcome)

        def published(scraped: Metrics, event_type: str) -> float:
            return metric(scraped, "ilt_events_published_total", event_type=event_type) - metric(
                s0, "ilt_events_published_total", event_type=event_type)

        r1 = scrape_until("reporting applied the 4 events", rep, lambda r: (
            consumed(r, SCHEDULED, "applied"), consumed(r, CANCELLED, "applied")) == (3, 1))
        s1 = scrape_until("scheduling published the 4 events", sched, lambda s: (
            published(s, SCHEDULED), published(s, CANCELLED)) == (3, 1))

        def grew(now: Metrics, before: Metrics, name: str, **labels: str) -> float:
            return metric(now, name, **labels) - metric(before, name, **labels)

        # scheduling: stored = published, nothing left in the outbox, requests per route and status
        assert grew(s1, s0, "ilt_events_stored_total", event_type=SCHEDULED) == 3
        assert grew(s1, s0, "ilt_events_stored_total", event_type=CANCELLED) == 1
        assert metric(s1, "ilt_outbox_backlog") == 0
        assert grew(s1, s0, "ilt_http_requests_total", method="POST", route="/sessions", status="201") == 3
        assert grew(s1, s0, "ilt_http_requests_total", method="POST", route="/sessions", status="422") == 1
        assert grew(s1, s0, "ilt_http_requests_total", method="POST", route="/sessions/{session_id}/cancel",
                    status="200") == 1
        assert grew(s1, s0, "ilt_http_request_duration_seconds_count", method="POST", route="/sessions") == 4
        assert metric(s1, "ilt_service", service="scheduling") == 1
        # reporting: handler latency per type, nothing failed, caught up
        assert grew(r1, r0, "ilt_handler_duration_seconds_count", event_type=SCHEDULED) == 3
        assert grew(r1, r0, "ilt_handler_duration_seconds_count", event_type=CANCELLED) == 1
        assert grew(r1, r0, "ilt_handler_errors_total", event_type=SCHEDULED) == 0
        assert consumed(r1, SCHEDULED, "duplicate") == 0
        caught_up = scrape_until("reporting lag 0", rep, lambda r: not any(
            series(r, "ilt_projection_lag_events").values()))
        assert metric(caught_up, "ilt_projection_lag_seconds") == 0

        # the same records again (a relay that crashed before marking them published): duplicates, no effect
        ours = records_on(servers, SCHEDULING_EVENTS, lambda h: h.get("ce_subject", b"").decode() in sessions, 4)
        assert sorted(dict(r.headers)["ce_type"].decode() for r in ours) == [CANCELLED, *[SCHEDULED] * 3]
        publish(servers, [(r.topic, r.key, r.value, list(r.headers)) for r in ours])
        # a record of an unknown type and one with an invalid payload: dead letters, per reason
        template = next(r for r in ours if dict(r.headers)["ce_type"] == SCHEDULED.encode())
        unknown_id, invalid_id = f"ops-{run}-unknown", f"ops-{run}-invalid"

        def variant(event_id: str, ce_type: bytes, value: bytes) -> tuple[str, bytes, bytes, list]:
            headers = [(k, {"ce_id": event_id.encode(), "ce_type": ce_type}.get(k, v)) for k, v in template.headers]
            return template.topic, template.key, value, headers

        # a learner enrolled: reporting applies it; its (pseudonymous) learner id must appear in no log
        learner_id = f"learner-{run}-do-not-log"
        enrolled = Envelope(data=LearnerEnrolled(occurred_at=datetime.now(UTC), enrollment_id=f"e-{run}",
                                                 session_id=sessions[0], learner_id=learner_id))
        publish(servers, [variant(unknown_id, b"ilt.scheduling.session-teleported.v1", template.value),
                          variant(invalid_id, SCHEDULED.encode(), b'{"session_id": 42}'), record(enrolled)])

        def dead(scraped: Metrics, reason: str) -> float:
            return grew(scraped, r0, "ilt_dead_lettered_total", reason=reason)

        r2 = scrape_until("duplicates skipped and dead letters counted", rep, lambda r: (
            consumed(r, SCHEDULED, "duplicate"), consumed(r, CANCELLED, "duplicate"), dead(r, "unknown_type"),
            dead(r, "invalid_payload"), consumed(r, LearnerEnrolled.event_type, "applied")) == (3, 1, 1, 1, 1))
        assert (consumed(r2, SCHEDULED, "applied"), consumed(r2, CANCELLED, "applied")) == (3, 1)  # still
        occupancy = httpx.get(f"{rep}/occupancy/sessions/{sessions[0]}", timeout=10, headers=reader()).json()
        assert (occupancy["status"], occupancy["enrolled"]) == ("scheduled", 1)

    # logs: one JSON object per line, every line names its service; ids on the lines about events and commands
    sched_log, rep_log = log_lines(tmp_path / "scheduling.log"), log_lines(tmp_path / "reporting.log")
    assert {line["service"] for line in sched_log} == {"scheduling"}
    assert {line["service"] for line in rep_log} == {"reporting"}
    wire = [{k: v.decode() for k, v in r.headers} for r in ours]
    event_ids = {h["ce_subject"]: h["ce_id"] for h in wire if h["ce_type"] == SCHEDULED}
    cancel_id = next(h["ce_id"] for h in wire if h["ce_type"] == CANCELLED)
    handled = [line for line in sched_log if line["event"] == "command handled"]
    assert [(h["route"], h["status"], h["event_ids"]) for h in handled] == [
        ("/sessions", 201, [event_ids[sessions[0]]]), ("/sessions", 201, [event_ids[sessions[1]]]),
        ("/sessions", 201, [event_ids[sessions[2]]]), ("/sessions/{session_id}/cancel", 200, [cancel_id])]
    assert handled[0]["correlation_id"] == correlation and handled[0]["event_type"] == SCHEDULED
    assert handled[1]["correlation_id"] == event_ids[sessions[1]]  # a new chain starts with the command's event
    rejected = [line for line in sched_log if line["event"] == "command rejected"]
    assert [(r["status"], r["events_stored"]) for r in rejected] == [(422, 0)]
    sent = {line["event_id"]: line for line in sched_log if line["event"] == "event published"}
    assert sent[event_ids[sessions[0]]]["correlation_id"] == correlation
    assert sent[cancel_id]["event_type"] == CANCELLED
    applied = {line["event_id"]: line for line in rep_log if line["event"] == "event applied"}
    assert applied[event_ids[sessions[0]]]["correlation_id"] == correlation
    assert applied[cancel_id]["event_type"] == CANCELLED and applied[enrolled.id]["event_type"] == enrolled.type
    letters = {line["event_id"]: line["reason"] for line in rep_log if line["event"] == "record dead-lettered"}
    assert letters == {unknown_id: "unknown_type", invalid_id: "invalid_payload"}
    assert {line["event"] for line in rep_log if line.get("event_id") == event_ids[sessions[1]]} == {
        "event applied", "event duplicate"}
    for path in tmp_path.glob("*.log"):
        assert learner_id not in path.read_text()


# ----- readiness ---------------------------------------------------------------------------------------------------

def test_readiness_names_the_unreachable_broker_and_recovers(tmp_path) -> None:
    port = free_port()  # nothing listens here yet
    servers = f"127.0.0.1:{port}"
    processes = {}
    for name in ("scheduling", "reporting"):
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": servers,
               f"{name.upper()}_HTTP_PORT": str(free_port()),
               f"{name.upper()}_STORE_URL": f"sqlite:///{tmp_path / (name + '.db')}", "LOG_FORMAT": "json"}
        processes[name] = ServiceProcess(name, int(env[f"{name.upper()}_HTTP_PORT"]), env, tmp_path / f"{name}.log")
        processes[name].start()
    try:
        for name, proc in processes.items():
            wait_for(f"{name} alive", lambda p=proc: _get(f"{p.url}/healthz") == 200, timeout=30)
            not_ready = httpx.get(f"{proc.url}/readyz", timeout=15)
            assert not_ready.status_code == 503
            checks = not_ready.json()["checks"]
            assert not_ready.json()["ready"] is False
            assert checks["store"] == "ok" and checks["broker"].startswith("unreachable")
            if name == "reporting":  # its consumer keeps trying in the background meanwhile
                assert checks["consumer"].startswith(("starting", "not started"))
                proc.stop()  # (stopping it while it joins the group, once the broker is up, would wait for the join)
        # the broker comes up on that port (with the topics): scheduling is ready without a restart
        with EmbeddedBroker(port=port):
            try:
                wait_for("scheduling ready", lambda: _get(f"{processes['scheduling'].url}/readyz") == 200, timeout=30)
                relay_ok = httpx.get(f"{processes['scheduling'].url}/readyz", timeout=15).json()
                assert relay_ok == {"ready": True, "checks": {"store": "ok", "broker": "ok", "consumer": "ok"}}
            finally:
                for proc in processes.values():  # before the broker: it stops at once when no client is left
                    proc.stop()
    finally:
        for proc in processes.values():
            proc.stop()


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=15).status_code
    except httpx.HTTPError:
        return None


# ----- SIGTERM -----------------------------------------------------------------------------------------------------

class AllocationStream(threading.Thread):
    """Publishes BudgetAllocated events of 1.00 EUR for one cost centre (one key: one partition, in order) in
    small batches until stopped; ``published`` counts what the broker acknowledged."""

    def __init__(self, servers: str, cost_centre: str, period: str, batch: int = 10, backlog: int = 0) -> None:
        super().__init__(daemon=True)
        self.servers, self.cost_centre, self.period, self.batch = servers, cost_centre, period, batch
        self.backlog = backlog
        self.published = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._publish())
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc

    async def _publish(self) -> None:
        producer = Producer(self.servers)
        try:
            if self.backlog:  # a burst first: the consumer is busy with full batches for a while
                await producer.send_many([record(allocation(self.cost_centre, self.period))
                                          for _ in range(self.backlog)])
                self.published += self.backlog
            while not self._halt.is_set():
                await producer.send_many([record(allocation(self.cost_centre, self.period))
                                          for _ in range(self.batch)])
                self.published += self.batch
                await asyncio.sleep(0.02)
        finally:
            await producer.stop()

    def finish(self) -> int:
        self._halt.set()
        self.join(timeout=30)
        if self.error is not None:
            raise self.error
        return self.published


def test_sigterm_during_a_stream_applies_every_event_once(kafka, tmp_path) -> None:
    servers = kafka.bootstrap_servers
    cost_centre, period = f"ops-{uuid.uuid4().hex[:8]}", "2999"
    with Stack(tmp_path, services=["reporting"], bootstrap_servers=servers) as stack:
        url, proc = stack.url("reporting"), stack.processes["reporting"]
        before = settle(url)["processed_events"]
        stream = AllocationStream(servers, cost_centre, period, backlog=3000)
        stream.start()
        try:
            # SIGTERM while reporting works through the burst (batches of up to 500 records, back to back)
            wait_for("reporting applying the stream", lambda: (allocated(url, cost_centre, period) or 0) > 0,
                     poll=0.01)
            assert proc.process is not None
            proc.process.send_signal(signal.SIGTERM)
            returncode = proc.process.wait(timeout=30)
            at_sigterm = stream.published
            # uvicorn re-raises the signal after its graceful shutdown; -9 would mean it had to be killed
            assert returncode in (0, -signal.SIGTERM)
            stops = [line for line in log_lines(proc.log_path) if line["event"] in (
                "stopping kafka consumer", "kafka consumer stopped", "service stopped")]
            assert [line["event"] for line in stops] == [
                "stopping kafka consumer", "kafka consumer stopped", "service stopped"]
            proc.start()
            proc.wait_ready()
            wait_for("the stream going on after the restart", lambda: stream.published > at_sigterm + 100)
        finally:
            published = stream.finish()
        # a last event on the same partition (same key): once it is applied, everything before it is
        publish(servers, [record(allocation(cost_centre, "2998"))])
        wait_for("the last event applied", lambda: allocated(url, cost_centre, "2998") == 1, timeout=120)
        assert allocated(url, cost_centre, period) == published  # each allocation counted exactly once
        assert status(url)["processed_events"] - before == published + 1  # none lost (the inbox has each once)
        print(f"\nstream: {published} events, {at_sigterm} acknowledged when the process had exited; "
              f"{stops[0]}; exit status {returncode}")


def test_sigterm_flushes_the_outbox(kafka, tmp_path) -> None:
    servers = kafka.bootstrap_servers
    run = uuid.uuid4().hex[:8]
    with Stack(tmp_path, services=["scheduling"], bootstrap_servers=servers) as stack:
        proc = stack.processes["scheduling"]
        assert proc.process is not None

        async def burst() -> list[tuple[int | None, str]]:
            """20 commands at once; SIGTERM as soon as the first is answered (the others are in flight)."""
            async with httpx.AsyncClient(base_url=proc.url, timeout=30, headers=stack.headers()) as http:
                async def schedule(n: int) -> tuple[int | None, str]:
                    try:
                        response = await http.post("/sessions", json=plan(run, n))
                        return response.status_code, response.json().get("session_id", "")
                    except httpx.HTTPError:
                        return None, ""

                tasks = [asyncio.create_task(schedule(n)) for n in range(20)]
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                proc.process.send_signal(signal.SIGTERM)
                return list(await asyncio.gather(*tasks))

        answers = asyncio.run(burst())
        returncode = proc.process.wait(timeout=30)
        assert returncode in (0, -signal.SIGTERM)
    accepted = [sid for code, sid in answers if code == 201]
    assert accepted  # at least the first one

    async def stored() -> tuple[set[str], int]:
        store = SQLiteStore(str(tmp_path / "scheduling.db"))
        await store.open()
        try:
            return {e.envelope.id async for e in store.read_all()}, await store.outbox_backlog()
        finally:
            await store.close()

    stored_ids, backlog = asyncio.run(stored())
    assert backlog == 0  # flushed before the process ended
    assert len(stored_ids) >= len(accepted)
    on_topic = records_on(servers, SCHEDULING_EVENTS, lambda h: h.get("ce_id", b"").decode() in stored_ids,
                          len(stored_ids))
    assert {dict(r.headers)["ce_id"].decode() for r in on_topic} == stored_ids
    assert {dict(r.headers)["ce_subject"].decode() for r in on_topic} >= set(accepted)
    flushed = [line for line in log_lines(tmp_path / "scheduling.log") if line["event"] == "outbox flushed"]
    assert len(flushed) == 1 and flushed[0]["published_total"] == len(stored_ids)


async def test_consumer_stop_finishes_the_handler_in_flight_and_commits_only_what_is_stored(kafka, tmp_path) -> None:
    """What ``broker.stop()`` (FastStream 0.7, read in its source) does with a handler in flight, on the real broker:
    it stops fetching, waits up to ``graceful_timeout`` for the message being handled (whose offsets are committed
    after the handler returned, so after our transaction), then cancels it. Two consumer groups get the same event;
    the patient one is released while stopping, the hasty one's grace runs out."""
    servers = kafka.bootstrap_servers
    run = uuid.uuid4().hex[:8]
    event = allocation(f"ops-{run}", "2999")
    entered = {"patient": asyncio.Event(), "hasty": asyncio.Event()}
    release = asyncio.Event()  # only the patient consumer's handler is ever released

    def handler(name: str):
        async def on_allocated(uow, envelope: Envelope) -> None:
            if envelope.id != event.id:  # other tests' events on the shared topic
                return
            await uow.put("allocations", envelope.id, {"by": name})
            entered[name].set()
            await (release.wait() if name == "patient" else asyncio.Event().wait())
        return on_allocated

    groups, brokers, stores = {}, {}, {}
    for name, grace in (("patient", 15.0), ("hasty", 0.5)):
        stores[name] = SQLiteStore(str(tmp_path / f"{name}.db"))
        await stores[name].open()
        groups[name] = f"ops-{name}-{run}"
        brokers[name] = KafkaBroker(servers, logger=None, graceful_timeout=grace)
        EventConsumer(groups[name], stores[name], {BudgetAllocated: handler(name)}, Producer(servers),
                      "ilt.reporting.dead-letter").subscribe(brokers[name], FINANCE_EVENTS)
    await asyncio.gather(*(broker.start() for broker in brokers.values()))
    try:
        producer = AIOKafkaProducer(bootstrap_servers=servers)
        await producer.start()
        try:
            topic, key, value, headers = record(event)
            sent = await producer.send_and_wait(topic, value=value, key=key, headers=headers)
        finally:
            await producer.stop()
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in entered.values())), TIMEOUT)

        patient = asyncio.create_task(brokers["patient"].stop())
        await asyncio.wait_for(brokers["hasty"].stop(), 20)  # returns after its 0.5 s grace: handler cancelled
        assert not patient.done()  # still waiting for the handler in flight
        release.set()
        await asyncio.wait_for(patient, 20)
    finally:
        release.set()
        for broker in brokers.values():
            await broker.stop()

    tp = TopicPartition(FINANCE_EVENTS, sent.partition)

    async def committed(group: str) -> int | None:
        consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            return await consumer.committed(tp)
        finally:
            await consumer.stop()

    # the patient group stored the event, then committed past it
    assert await stores["patient"].get("allocations", event.id) == {"by": "patient"}
    assert (await committed(groups["patient"]) or 0) > sent.offset
    # the hasty group's transaction was rolled back and its offset not committed: the event comes back on restart
    assert await stores["hasty"].get("allocations", event.id) is None
    assert (await committed(groups["hasty"]) or 0) <= sent.offset
    for store in stores.values():
        await store.close()
