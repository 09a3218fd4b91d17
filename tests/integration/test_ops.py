"""The operator tools (python -m ops) against the real broker.

- rebuild-projections: reporting stopped, reset, started again: it projects the topics from the start and its
  figures are exactly the same;
- broker loss: a fresh embedded broker (empty: every topic and offset gone); replay of the three producers'
  stores; reporting rebuilt from the replay alone shows exactly the same figures, enrollment and finance skip
  every replayed event they had applied (their figures and processed counts do not move);
- dead letters: list and show what a consumer dead-lettered (reason, original headers and value), redrive after
  the fix: the record is applied once.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import KafkaBroker

from devstack.broker import EmbeddedBroker
from devstack.stack import Stack
from ops import tools
from ops.__main__ import main as ops_main
from shared.contracts.enrollment import LearnerEnrolled
from shared.contracts.topics import ENROLLMENT_EVENTS
from shared.messaging.consumer import EventConsumer
from shared.messaging.envelope import Envelope
from shared.messaging.kafka import Producer
from shared.store.sqlite import SQLiteStore

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
YEAR = datetime.now(UTC).year + 1


def plan(session_id: str, venue: str, day: int, capacity: int = 2) -> dict[str, Any]:
    return {"session_id": session_id, "course_code": "SWC", "title": "SWC", "delivery": "classroom",
            "venue_id": venue, "time_zone": "Europe/Berlin", "capacity": capacity, "cost_centre": "CC-OPS",
            "slots": [{"starts_at": f"{YEAR}-06-{day:02d}T09:00", "ends_at": f"{YEAR}-06-{day:02d}T17:00"}],
            "planned_costs": [{"category": "venue_hire", "amount": {"amount": "400.00", "currency": "EUR"},
                               "cost_centre": "CC-OPS"}]}


def drive(stack: Stack) -> None:
    """A small day of work through the APIs: budget, rates, three sessions, enrollments, cancellations, invoice."""
    with httpx.Client(timeout=30, headers=stack.headers()) as http:
        fin, sched, enrol = stack.url("finance"), stack.url("scheduling"), stack.url("enrollment")
        eur = {"currency": "EUR"}
        assert http.post(f"{fin}/budgets", json={"cost_centre": "CC-OPS", "period": str(YEAR),
                                                 "amount": {"amount": "5000.00", **eur}}).status_code == 201
        assert http.put(f"{fin}/cost-centres/CC-OPS/per-learner-rates", json={"rates": [
            {"category": "catering", "amount": {"amount": "20.00", **eur}, "per": "day"}]}).status_code == 200
        for n, (sid, venue) in enumerate((("a", "room-a"), ("b", "room-b"), ("c", "room-c")), start=1):
            assert http.post(f"{sched}/sessions", json=plan(sid, venue, n)).status_code == 201
        ids = {}
        for sid, learners in (("a", 3), ("b", 2), ("c", 1)):
            for n in range(learners):
                r = http.post(f"{enrol}/sessions/{sid}/enrollments", json={"learner_id": f"{sid}-{n}"})
                assert r.status_code == 201, r.text
                ids[f"{sid}-{n}"] = r.json()["enrollment_id"]
        assert http.post(f"{enrol}/enrollments/{ids['a-0']}/cancel", json={}).status_code == 200  # promotes a-2
        assert http.post(f"{sched}/sessions/c/cancel", json={"reason": "venue closed"}).status_code == 200
        invoice = {"invoice_ref": "INV-OPS-1", "cost_centre": "CC-OPS", "period": str(YEAR),
                   "category": "venue_hire", "amount": {"amount": "380.00", **eur}, "session_id": "a"}
        assert http.post(f"{fin}/costs", json=invoice).status_code == 201


def figures(stack: Stack) -> dict[str, Any]:
    with httpx.Client(timeout=30, headers=stack.headers("reader")) as http:
        rep, fin = stack.url("reporting"), stack.url("finance")
        sessions = http.get(f"{rep}/occupancy/sessions").json()
        return {"totals": http.get(f"{rep}/occupancy/totals").json(),
                "sessions": sorted(sessions["sessions"], key=lambda s: s["session_id"]),
                "budgets": http.get(f"{rep}/budgets").json(),
                "finance": http.get(f"{fin}/cost-centres/CC-OPS").json()["budgets"],
                "roster_a": http.get(f"{stack.url('enrollment')}/sessions/a/roster").json()}


def processed(stack: Stack, name: str) -> int:
    return httpx.get(f"{stack.url(name)}/status", timeout=10).json()["processed_events"]


def ops(*args: str) -> int:
    return ops_main([*args, "--no-progress"])


def test_rebuild_and_replay_after_a_broker_loss_give_exactly_the_same_figures(tmp_path) -> None:
    first = EmbeddedBroker(log_file=tmp_path / "broker-1.log").start()
    try:
        with Stack(tmp_path, bootstrap_servers=first.bootstrap_servers) as stack:
            drive(stack)
            stack.wait_quiescent(timeout=90)
            before = figures(stack)
            assert before["totals"]["sessions"] == 2 and before["totals"]["enrolled"] == 4  # a: 2 of 3, b: 2
            assert before["totals"]["cancelled_sessions"] == 1 and before["budgets"]["budgets"]

            # rebuild-projections with the broker intact: reporting stopped, reset, rewound, started again
            reporting = stack.processes["reporting"]
            reporting.stop()
            code = ops("rebuild-projections", "--yes", "--store-url", f"sqlite:///{tmp_path / 'reporting.db'}",
                       "--bootstrap-servers", first.bootstrap_servers)
            assert code == 0
            reporting.start()
            reporting.wait_ready()
            stack.wait_quiescent(timeout=90)
            assert figures(stack) == before
    finally:
        first.stop()  # the broker is lost: every topic, record and consumer-group offset with it

    second = EmbeddedBroker(log_file=tmp_path / "broker-2.log").start()
    try:
        # reporting from nothing as well: its figures can then only come from the replay
        assert ops("rebuild-projections", "--yes", "--store-url", f"sqlite:///{tmp_path / 'reporting.db'}",
                   "--bootstrap-servers", second.bootstrap_servers) == 0
        with Stack(tmp_path, bootstrap_servers=second.bootstrap_servers) as stack:
            seen = {name: processed(stack, name) for name in ("enrollment", "finance")}
            assert processed(stack, "reporting") == 0
            # one replay through the real entry point, the others in process
            done = subprocess.run([sys.executable, "-m", "ops", "replay", "--service", "scheduling", "--no-progress",
                                   "--store-url", f"sqlite:///{tmp_path / 'scheduling.db'}",
                                   "--bootstrap-servers", second.bootstrap_servers],
                                  cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            assert "events republished" in done.stdout
            for name in ("enrollment", "finance"):
                assert ops("replay", "--service", name, "--store-url", f"sqlite:///{tmp_path / (name + '.db')}",
                           "--bootstrap-servers", second.bootstrap_servers) == 0
            stack.wait_quiescent(timeout=90)
            after = figures(stack)
            assert after == before
            # enrollment and finance had applied every replayed event: they skipped them all
            assert {name: processed(stack, name) for name in ("enrollment", "finance")} == seen
    finally:
        second.stop()


def test_replay_since_a_position_or_a_time(tmp_path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))

    async def scenario() -> tuple[int, int, int]:
        await store.open()
        events = [Envelope(data=LearnerEnrolled(occurred_at=datetime.now(UTC), enrollment_id=f"e{n}",
                                                session_id="s", learner_id=f"l{n}"),
                           time=datetime(2030, 1, 1, tzinfo=UTC) + timedelta(days=n)) for n in range(5)]
        async with store.transaction() as uow:
            await uow.append("roster-s", 0, events)
        sent: list[Any] = []

        class Recorder(Producer):
            async def send_many(self, records: Any) -> None:
                sent.extend(records)

        everything = (await tools.replay(store, Recorder("unused")))["published"]
        from_3 = (await tools.replay(store, Recorder("unused"), since="3"))["published"]
        since_day = (await tools.replay(store, Recorder("unused"), since="2030-01-04T00:00:00"))["published"]
        assert [r[0] for r in sent[:5]] == [ENROLLMENT_EVENTS] * 5 and sent[0][1] == b"s"
        await store.close()
        return everything, from_3, since_day

    assert asyncio.run(scenario()) == (5, 3, 2)
    with pytest.raises(ValueError, match="neither a position"):
        tools.parse_since("yesterday")


async def test_dead_letters_list_show_and_redrive_after_the_fix(kafka, tmp_path, capsys) -> None:
    servers = kafka.bootstrap_servers
    group = f"ops-{uuid.uuid4().hex[:8]}"
    session_id = f"s-{uuid.uuid4()}"
    store = SQLiteStore(str(tmp_path / "consumer.db"))
    await store.open()
    producer = Producer(servers)
    broken = {"on": True}
    applied: list[str] = []

    async def on_enrolled(uow: Any, envelope: Envelope) -> None:
        if envelope.data.session_id != session_id:  # the broker is shared with other tests
            return
        if broken["on"]:
            raise RuntimeError("projection bug")
        applied.append(envelope.data.enrollment_id)
        await uow.put("applied", envelope.data.enrollment_id, {"n": 1})

    consumer = EventConsumer(group, store, {LearnerEnrolled: on_enrolled}, producer, "ilt.reporting.dead-letter",
                             max_attempts=2, backoff_seconds=0.01)
    broker = KafkaBroker(servers)
    consumer.subscribe(broker, ENROLLMENT_EVENTS)
    await broker.start()
    try:
        event = Envelope(data=LearnerEnrolled(occurred_at=datetime.now(UTC), enrollment_id="e1",
                                              session_id=session_id, learner_id="l1"))
        await producer.send(ENROLLMENT_EVENTS, session_id.encode(), event.value(), event.headers())
        await until(lambda: consumer.stats.dead_lettered >= 1)
        [doc] = await tools.dead_letters(store)
        assert doc["reason"] == "handler_failed" and "projection bug" in doc["error"]
        assert doc["event_id"] == event.id and doc["topic"] == ENROLLMENT_EVENTS

        # the CLI lists and shows it (from the store, and the record from the dead-letter topic)
        url = f"sqlite:///{tmp_path / 'consumer.db'}"
        assert await asyncio.to_thread(ops, "dead-letters", "list", "--service", "reporting",
                                       "--store-url", url, "--bootstrap-servers", servers) == 0
        listed = capsys.readouterr().out
        assert "1 dead-lettered records" in listed and doc["id"] in listed and "handler_failed" in listed
        assert await asyncio.to_thread(ops, "dead-letters", "show", "--service", "reporting", doc["id"], "--json",
                                       "--store-url", url, "--bootstrap-servers", servers) == 0
        shown = capsys.readouterr().out
        assert f'"ce_id": "{event.id}"' in shown and '"dlq_reason": "handler_failed"' in shown
        assert '"enrollment_id":"e1"' in shown.replace(" ", "").replace('\\"', '"')

        # the fix is deployed; redrive: the record goes back to its topic and is applied, once
        broken["on"] = False
        out = await tools.redrive(store, group, producer, servers, "ilt.reporting.dead-letter", None)
        assert out == {"redriven": [doc["id"]], "not_found": [], "already_applied": []}
        await until(lambda: applied == ["e1"])
        [again] = await tools.dead_letters(store)
        assert again["redriven_at"]
        # --all again: nothing left to redrive
        assert (await tools.redrive(store, group, producer, servers, "ilt.reporting.dead-letter", None))[
            "redriven"] == []
        assert applied == ["e1"] and await store.get("applied", "e1") == {"n": 1}
    finally:
        await broker.stop()
        await producer.stop()
        await store.close()


async def until(predicate: Any, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)
