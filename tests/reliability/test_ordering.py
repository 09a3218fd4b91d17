"""Ordering: the events of one session are applied in the order they were stored, even while several members of a
consumer group work on their partitions at the same time.

Real broker (Tansu), real services (scheduling, enrollment, finance as processes, the load through their HTTP
APIs), real SQLite. Reporting's consumer group is three in-process members (``members.Member``: the real
``EventConsumer`` and reporting's real handlers on reporting's store file), each holding some of the 6 partitions
of each topic, each with jitter (a random pause before every batch, and now and then inside a handler); one of them
leaves halfway through the load, so its partitions move to the other two while events keep coming.

The load is one where order matters, per session and interleaved over many sessions: scheduled, capacity changed,
learners enrolled (seats, then the waitlist), cancellations (each freed seat promotes the first waiting learner),
capacity raised (enrollment promotes from the waitlist), a last cancellation, then rescheduled or cancelled.

Every handler call is recorded **in the consumer's transaction** (a document per topic and key, i.e. per
partition-ordered stream: the event ids in the order they were committed), so only what was really applied counts.
That sequence is compared, key by key, with the order the producers stored the events in (their stores, read
afterwards); the projections are compared with the oracle computed from the HTTP answers.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.broker import EmbeddedBroker
from devstack.stack import Stack, wait_quiescent
from services.reporting.application.policies import handlers
from shared.messaging.consumer import Handler
from shared.messaging.kafka import Producer
from shared.store.port import UnitOfWork
from shared.store.sqlite import SQLiteStore

from .conftest import knob
from .members import (
    ALL_PARTITIONS,
    GROUP,
    Member,
    concurrent_batches,
    quiet_logs,
    redelivered,
    reporting_process,
    split,
    wait_until,
)
from .workload import COST_CENTRES, Client, Oracle, Urls, compare, plan, setup_budgets, stored_events

pytestmark = pytest.mark.integration
APPLIED = "reliability-applied"  # documents in reporting's store: per topic and key, the event ids as applied
HANDLED = tuple(handlers())  # the event types reporting has a handler for (the only ones a handler can record)


# ----- the detector ------------------------------------------------------------------------------------------------

@dataclass
class OrderCheck:
    streams: int = 0
    out_of_order: int = 0  # events applied after an event that was stored after them
    lost: int = 0  # stored, never applied
    duplicated: int = 0  # applied more than once, or applied without being stored
    streams_out_of_order: tuple[str, ...] = ()


def check_order(stored: dict[str, list[str]], applied: dict[str, list[str]]) -> OrderCheck:
    """Per stream (topic and key), the applied event ids against the stored ones: in the same order, each once."""
    out = OrderCheck(streams=len(stored))
    wrong = []
    for key in stored.keys() | applied.keys():
        want, got = stored.get(key, []), applied.get(key, [])
        out.lost += len(set(want) - set(got))
        out.duplicated += len(got) - len(set(got)) + len(set(got) - set(want))
        index = {event_id: n for n, event_id in enumerate(want)}
        positions = [index[event_id] for event_id in dict.fromkeys(got) if event_id in index]
        descents = sum(1 for a, b in itertools.pairwise(positions) if b < a)
        out.out_of_order += descents
        if descents:
            wrong.append(key)
    out.streams_out_of_order = tuple(sorted(wrong))
    return out


def test_the_order_check_sees_a_swap_a_loss_and_a_repeat() -> None:
    stored = {"t|s1": ["a", "b", "c", "d"], "t|s2": ["e", "f"]}
    assert check_order(stored, {"t|s1": ["a", "b", "c", "d"], "t|s2": ["e", "f"]}) == OrderCheck(streams=2)
    swapped = check_order(stored, {"t|s1": ["a", "c", "b", "d"], "t|s2": ["e", "f"]})
    assert (swapped.out_of_order, swapped.lost, swapped.duplicated) == (1, 0, 0)
    assert swapped.streams_out_of_order == ("t|s1",)
    assert check_order(stored, {"t|s1": ["d", "c", "b", "a"], "t|s2": ["e", "f"]}).out_of_order == 3
    assert check_order(stored, {"t|s1": ["a", "b", "d"], "t|s2": ["e", "f"]}).lost == 1
    assert check_order(stored, {"t|s1": ["a", "b", "b", "c", "d"], "t|s2": ["e", "f"]}).duplicated == 1
    assert check_order(stored, {"t|s1": ["a", "b", "c", "d"], "t|s2": ["f", "e"]}).out_of_order == 1


def stream_key(event: Any) -> str:
    """The partition-ordered stream an event belongs to: its topic and Kafka key (the aggregate id)."""
    return f"{event.topic}|{event.aggregate_id()}"


def recorded(handler: Handler, member: str, rng: random.Random) -> Handler:
    """The real handler, sometimes after a short pause (inside the transaction), then the event id appended to its
    stream's document in the same transaction: committed with the handler's effect, or not at all."""

    async def record(uow: UnitOfWork, envelope: Any) -> None:
        if rng.random() < 0.05:
            await asyncio.sleep(rng.random() * 0.004)
        await handler(uow, envelope)
        key = stream_key(envelope.data)
        doc = await uow.get(APPLIED, key) or {"ids": [], "members": []}
        doc["ids"].append(envelope.id)
        doc["members"].append(member)
        await uow.put(APPLIED, key, doc)

    return record


async def stored_order(workdir: Path) -> dict[str, list[str]]:
    """Per stream, the ids of the events reporting handles, in the order their producer stored them (the outbox,
    hence the partition, has that order)."""
    out: dict[str, list[str]] = defaultdict(list)
    for name in ("scheduling", "enrollment", "finance"):
        store = SQLiteStore(str(workdir / f"{name}.db"))
        await store.open()
        try:
            async for recorded_event in store.read_all():
                if isinstance(recorded_event.envelope.data, HANDLED):
                    out[stream_key(recorded_event.envelope.data)].append(recorded_event.envelope.id)
        finally:
            await store.close()
    return dict(out)


# ----- the load ----------------------------------------------------------------------------------------------------

async def change_capacity(client: Client, urls: Urls, oracle: Oracle, sid: str, capacity: int) -> None:
    """Reschedule to a new capacity, then wait until enrollment applied it (its roster shows the capacity: the
    promotions it made are in the same transaction), so the next command meets the new capacity, as the oracle."""
    await client.send("POST", f"{urls.scheduling}/sessions/{sid}/reschedule", {"capacity": capacity}, ok=(200,))
    oracle.capacity_changed(sid, capacity)
    deadline = time.monotonic() + 120
    while True:
        r = await client.http.get(f"{urls.enrollment}/sessions/{sid}/roster")
        if r.status_code == 200 and r.json()["capacity"] == capacity:
            return
        assert time.monotonic() < deadline, f"enrollment never applied capacity {capacity} of {sid}"
        await asyncio.sleep(0.05)


async def ordered_session(client: Client, urls: Urls, oracle: Oracle, run: str, n: int, rng: random.Random) -> None:
    """One session whose events only add up in their order: scheduled, capacity changed, enrollments (seats,
    then the waitlist), cancellations (promotions), capacity raised (promotions by enrollment), a last
    cancellation, then rescheduled to other times or cancelled."""
    sid = f"{run}-s{n}"
    capacity = rng.randint(4, 8)
    cc = rng.choice(COST_CENTRES)
    body = plan(sid, n, capacity, cc)
    await client.send("POST", f"{urls.scheduling}/sessions", body)
    oracle.scheduled(sid, capacity, cc)
    capacity += rng.choice((-2, -1, 1, 2))
    await change_capacity(client, urls, oracle, sid, capacity)
    learners = [f"{sid}-l{k}" for k in range(capacity + rng.randint(3, 12))]
    bulk, singles = learners[:capacity + 1], learners[capacity + 1:]
    r, _ = await client.send("POST", f"{urls.enrollment}/sessions/{sid}/enrollments/batch", {"learners": bulk},
                             ok=(200,))
    for learner, result in zip(bulk, r.json()["results"], strict=True):
        oracle.enrolled(sid, learner, result)
    for learner in singles:
        r, _ = await client.send("POST", f"{urls.enrollment}/sessions/{sid}/enrollments", {"learner_id": learner})
        oracle.enrolled(sid, learner, r.json())
    model = oracle.sessions[sid]
    for _ in range(rng.randint(1, 3)):
        await cancel_one(client, urls, oracle, sid, rng.choice(model.enrolled))
    await change_capacity(client, urls, oracle, sid, capacity + rng.randint(1, 3))
    live = model.enrolled + model.waitlist
    await cancel_one(client, urls, oracle, sid, rng.choice(live))
    if rng.random() < 0.2:
        await client.send("POST", f"{urls.scheduling}/sessions/{sid}/cancel", {"reason": "trainer ill"}, ok=(200,))
        oracle.session_cancelled(sid)
    else:
        slots = [{"starts_at": s["starts_at"].replace("T09:00", "T10:00"),
                  "ends_at": s["ends_at"].replace("T17:00", "T18:00")} for s in body["slots"]]
        await client.send("POST", f"{urls.scheduling}/sessions/{sid}/reschedule", {"slots": slots}, ok=(200,))
        oracle.rescheduled(sid)


async def cancel_one(client: Client, urls: Urls, oracle: Oracle, sid: str, enrollment_id: str) -> None:
    r, tries = await client.send("POST", f"{urls.enrollment}/enrollments/{enrollment_id}/cancel", {})
    oracle.cancelled(enrollment_id, sid, r.json(), first_answer=tries == 1)


# ----- the test ----------------------------------------------------------------------------------------------------

async def members_scenario(stack: Stack, urls: Urls, oracle: Oracle, seed: int, sessions: int) -> dict[str, Any]:
    servers = stack.bootstrap_servers
    assert servers
    store = SQLiteStore(str(stack.workdir / "reporting.db"))
    await store.open()
    producer = Producer(servers)  # the members' dead-letter producer
    rng = random.Random(seed)
    members = [Member(name, servers, store, {t: recorded(h, name, rng) for t, h in handlers().items()}, producer,
                      pause=lambda: rng.random() * 0.02)
               for name in ("A", "B", "C")]
    leaving = members[2]
    client = Client(stack.headers())
    try:
        await asyncio.gather(*(m.start() for m in members))
        await wait_until("three members, each holding some partitions", lambda: split(members), 120)
        held = [len(m.listener.current) for m in members]
        left_at = None

        async def one_leaves() -> None:  # halfway through the load: its partitions move to the other two
            nonlocal left_at
            await wait_until("half of the load", lambda: len(oracle.sessions) >= sessions // 2, 600)
            await leaving.stop()
            left_at = len(oracle.sessions)

        leave = asyncio.create_task(one_leaves())
        await setup_budgets(client, urls, oracle)
        counter = iter(range(sessions))

        async def worker() -> None:
            for n in counter:
                await ordered_session(client, urls, oracle, "order", n, random.Random(seed * 100003 + n))

        await asyncio.gather(*(worker() for _ in range(8)))
        await leave
        stayed = members[:2]
        await wait_until("the two members left hold every partition", lambda: split(stayed), 120)
        status = await asyncio.to_thread(wait_quiescent, asdict(urls), 120)
        events = stored_events(status)

        async def inbox_complete() -> bool:
            return await store.processed_count(GROUP) >= events

        await wait_until("every stored event in reporting's inbox", inbox_complete, 120)
        applied = {key: doc["ids"] for key, doc in await store.scan(APPLIED)}
        by_member = defaultdict(int)
        for _, doc in await store.scan(APPLIED):
            for name in doc["members"]:
                by_member[name] += 1
        # the reporting service takes over the group (and serves the projections the members wrote)
        reporting = reporting_process(stack)
        reporting.start()
        await asyncio.to_thread(reporting.wait_ready, 120)
    finally:
        for m in members:
            await m.stop()
        await client.close()
        await producer.stop()
        await store.close()
    return {"events": events, "applied": applied, "by_member": dict(by_member), "held": held, "left_at": left_at,
            "concurrent": concurrent_batches(members), "batches": sum(len(m.batches) for m in members),
            "redelivered": redelivered(members),
            "duplicates": sum(m.consumer.stats.skipped_duplicates for m in members)}


def test_events_of_one_session_are_applied_in_order_by_concurrent_members(tmp_path, report) -> None:
    seed = knob("RELIABILITY_SEED", random.SystemRandom().randrange(10**6))
    sessions = knob("RELIABILITY_ORDERING_SESSIONS", 120)
    started = time.monotonic()
    broker = EmbeddedBroker(log_file=tmp_path / "broker.log").start()
    try:
        # reporting's group is the three members below while the load runs; the reporting process comes at the end
        with Stack(tmp_path, services=("scheduling", "enrollment", "finance"),
                   bootstrap_servers=broker.bootstrap_servers,
                   extra_env={"LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")}) as stack:
            urls = Urls(stack.url("scheduling"), stack.url("enrollment"), stack.url("finance"))
            oracle = Oracle()
            with quiet_logs():
                f = asyncio.run(members_scenario(stack, urls, oracle, seed, sessions))
            stored = asyncio.run(stored_order(tmp_path))
            status = stack.wait_quiescent(timeout=120)
            comparison = asyncio.run(compare(oracle, stack.url("reporting"), urls.enrollment, stack.headers()))
    finally:
        broker.stop()
    check = check_order(stored, f["applied"])
    # the detector, fed the same streams with one pair of neighbours swapped in the longest one, sees it
    longest = max(stored, key=lambda key: len(stored[key]))
    shuffled = {**f["applied"], longest: list(stored[longest])}
    shuffled[longest][1], shuffled[longest][2] = shuffled[longest][2], shuffled[longest][1]
    assert check_order(stored, shuffled).out_of_order >= 1
    applied_events = sum(len(ids) for ids in f["applied"].values())
    report(f"ordering: sessions: {len(oracle.sessions)}, events: {f['events']} ({applied_events} with a reporting "
           f"handler, in {check.streams} streams), members: 3 (holding {'/'.join(map(str, f['held']))} of "
           f"{len(ALL_PARTITIONS)} partitions, 6 per topic; one left after {f['left_at']} sessions), applied by "
           f"{', '.join(f'{k} {v}' for k, v in sorted(f['by_member'].items()))}, batches handed over while another "
           f"member was applying one: {f['concurrent']} of {f['batches']}, out of order: {check.out_of_order}, "
           f"lost: {check.lost + comparison.lost}, duplicated: {check.duplicated + comparison.duplicated} "
           f"(seed {seed}, {time.monotonic() - started:.0f} s)")
    assert check.out_of_order == 0, check.streams_out_of_order[:20]
    assert check.lost == 0 and check.duplicated == 0, check
    # the members really worked side by side, each on its own partitions
    assert len(f["by_member"]) == 3 and all(n > 0 for n in f["by_member"].values()), f["by_member"]
    assert f["concurrent"] > 0
    # and the projections are the oracle's
    assert comparison.differences == [], comparison.differences[:20]
    assert comparison.lost == 0 and comparison.duplicated == 0
    assert status["reporting"]["processed_events"] == f["events"]
    assert f["duplicates"] == f["redelivered"], f  # what a partition move handed out again was skipped
