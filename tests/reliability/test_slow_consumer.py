"""Slow consumer: a handler slower than its consumer's ``max.poll.interval`` makes the group rebalance while the
batch is being applied, and the idempotent consumer absorbs the redelivery.

Real broker (Tansu), real services (scheduling, enrollment, finance as processes, the load through their HTTP
APIs), real SQLite: reporting's consumer group is made of two in-process members (``members.Member``: the real
``EventConsumer`` and reporting's real handlers on reporting's store file; the reporting process is started at the
end, joins before they leave and serves the projections they wrote). Member A has ``max_poll_interval_ms`` = 1.5 s;
once both members hold partitions and the load runs, one handler call of A is slow: it takes longer than A's poll
interval, namely until the group has taken A's partitions away and given them all to B (a condition, not a fixed
pause; bounded).
So, observed rather than assumed:

- A leaves the group while its handler runs (A's listener: partitions revoked during the call), B is assigned
  every partition (B's listener), A's offset commit after the batch is refused (its log), A rejoins and the
  partitions are split again, A applies again: at least 2 rebalances (B's assignments meanwhile);
- B is handed A's uncommitted records again (and A, back, may be handed B's): every record handed out twice
  (same topic, partition, offset) is skipped as a duplicate the second time (the inbox claim is in the
  transaction that applied it; the offsets are committed only after it), counted by the consumers and the
  ``ilt_events_consumed_total{outcome="duplicate"}`` metric alike;
- the projections equal the oracle computed from the HTTP answers: nothing lost, nothing applied twice.

Not a timing test: every wait is a condition with a generous timeout; the figures report the durations.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import pytest

from devstack.broker import EmbeddedBroker
from devstack.stack import Stack, wait_quiescent
from services.reporting.application.policies import handlers
from shared import metrics
from shared.messaging.consumer import Handler
from shared.messaging.kafka import Producer
from shared.store.sqlite import SQLiteStore

from .conftest import knob
from .members import ALL_PARTITIONS, GROUP, Member, quiet_logs, redelivered, reporting_process, split, wait_until
from .workload import Client, Oracle, Urls, compare, run_load, setup_budgets, stored_events

pytestmark = pytest.mark.integration
MAX_POLL_MS = 1500
SLOW_LIMIT = 120.0  # the slow call gives up waiting for the rebalance after this (the test then fails)


class SlowOnce:
    """Wraps handlers: once armed, the next handler call is slower than the poll interval — it waits (inside the
    consumer's transaction, as a slow handler does) until ``until()`` holds and at least the poll interval has
    passed — then applies the event as usual. Every other call is the real handler as it is."""

    def __init__(self) -> None:
        self.armed = False
        self.until: Callable[[], bool] = lambda: False
        self.started: float | None = None
        self.ended: float | None = None

    def wrap(self, handler: Handler) -> Handler:
        async def maybe_slow(uow: Any, envelope: Any) -> None:
            if self.armed:
                self.armed = False
                self.started = time.monotonic()
                while (time.monotonic() - self.started < MAX_POLL_MS / 1000 or not self.until()) \
                        and time.monotonic() - self.started < SLOW_LIMIT:
                    await asyncio.sleep(0.05)
                self.ended = time.monotonic()
            await handler(uow, envelope)
        return maybe_slow


def duplicates_counted() -> float:
    """ilt_events_consumed_total{outcome="duplicate"} of this process (the members' consumers count there)."""
    return sum(s.value for family in metrics.EVENTS_CONSUMED.collect() for s in family.samples
               if s.name == "ilt_events_consumed_total" and s.labels.get("outcome") == "duplicate")


async def members_scenario(stack: Stack, urls: Urls, oracle: Oracle, seed: int) -> dict[str, Any]:
    servers = stack.bootstrap_servers
    assert servers
    store = SQLiteStore(str(stack.workdir / "reporting.db"))
    await store.open()
    producer = Producer(servers)  # the members' dead-letter producer
    slow = SlowOnce()
    a = Member("A", servers, store, {t: slow.wrap(h) for t, h in handlers().items()}, producer,
               max_poll_interval_ms=MAX_POLL_MS)
    b = Member("B", servers, store, handlers(), producer)  # the default poll interval (5 min)
    members = [a, b]
    client = Client(stack.headers())
    episode_over = False
    sessions = knob("RELIABILITY_SLOW_SESSIONS", 10)
    duplicates_before = duplicates_counted()
    try:
        await a.start()  # aiokafka's start returns once the member holds its partitions
        await b.start()
        await wait_until("both members hold partitions", lambda: split(members), 120)
        slow.until = lambda: b.listener.current == ALL_PARTITIONS  # the group gave A's partitions to B
        assignments_before = len(b.listener.assigned)
        slow.armed = True

        async def load() -> None:
            await setup_budgets(client, urls, oracle)
            # at least ``sessions``, and more as long as the slow call and its rebalances are not over
            await run_load(client, urls, oracle, "slow", seed, sessions, 3, more=lambda: not episode_over)

        load_task = asyncio.create_task(load())
        try:
            await wait_until("the slow handler call finished", lambda: slow.ended is not None, SLOW_LIMIT + 60)
            assert slow.started is not None and slow.ended is not None
            # A back in the group: assigned again after its slow call, the partitions split between A and B
            await wait_until("member A rejoined and the partitions are split again",
                             lambda: a.listener.assigned[-1][0] > slow.ended and split(members), 120)
            applied = a.consumer.stats.processed
            await wait_until("member A applying again", lambda: a.consumer.stats.processed > applied, 120)
            rebalances = len(b.listener.assigned) - assignments_before  # B takes part in every rebalance
        finally:
            episode_over = True
            await load_task
        # every event the producers stored (their reactions included) reached reporting's inbox
        status = await asyncio.to_thread(wait_quiescent, asdict(urls), 120)
        events = stored_events(status)

        async def inbox_complete() -> bool:
            return await store.processed_count(GROUP) >= events

        await wait_until("every stored event in reporting's inbox", inbox_complete, 120)
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
    revoked_while_slow = [t for t, tps in a.listener.revoked if slow.started <= t <= slow.ended and tps]
    return {
        "slow_seconds": slow.ended - slow.started,
        "a_revoked_while_slow": len(revoked_while_slow),
        "b_took_all": any(tps == ALL_PARTITIONS for t, tps in b.listener.assigned if t >= slow.started),
        "rebalances": rebalances,
        "a_commits_refused": a.refused_commits(),
        "events": events,
        "redelivered": redelivered(members),
        "duplicates": a.consumer.stats.skipped_duplicates + b.consumer.stats.skipped_duplicates,
        "duplicates_metric": duplicates_counted() - duplicates_before,
        "dead_lettered": a.consumer.stats.dead_lettered + b.consumer.stats.dead_lettered,
        "sessions": len(oracle.sessions),
    }


def test_a_handler_slower_than_max_poll_interval_rebalances_and_the_inbox_absorbs_the_redelivery(tmp_path,
                                                                                                 report) -> None:
    seed = knob("RELIABILITY_SEED", random.SystemRandom().randrange(10**6))
    started = time.monotonic()
    broker = EmbeddedBroker(log_file=tmp_path / "broker.log").start()
    try:
        # reporting's group is the two members below while the load runs; the reporting process comes at the end
        with Stack(tmp_path, services=("scheduling", "enrollment", "finance"),
                   bootstrap_servers=broker.bootstrap_servers,
                   extra_env={"LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")}) as stack:
            urls = Urls(stack.url("scheduling"), stack.url("enrollment"), stack.url("finance"))
            oracle = Oracle()
            with quiet_logs():
                f = asyncio.run(members_scenario(stack, urls, oracle, seed))
            status = stack.wait_quiescent(timeout=120)
            comparison = asyncio.run(compare(oracle, stack.url("reporting"), urls.enrollment, stack.headers()))
    finally:
        broker.stop()
    report(f"slow consumer: handler {f['slow_seconds']:.1f} s > max.poll.interval {MAX_POLL_MS / 1000:.1f} s, "
           f"rebalances: {f['rebalances']}, events: {f['events']}, redelivered: {f['redelivered']}, "
           f"duplicates absorbed: {f['duplicates']}, sessions: {f['sessions']}, commands: {oracle.commands}, "
           f"lost: {comparison.lost}, duplicated: {comparison.duplicated} "
           f"(seed {seed}, {time.monotonic() - started:.0f} s)")
    # the rebalance really happened, while the slow handler ran
    assert f["slow_seconds"] > MAX_POLL_MS / 1000
    assert f["a_revoked_while_slow"] >= 1, "the slow member kept its partitions: no rebalance"
    assert f["b_took_all"], "the other member was never given the slow member's partitions"
    assert f["rebalances"] >= 2, f["rebalances"]  # A out, A back in
    assert f["a_commits_refused"] >= 1, "the slow member's offset commit after the rebalance was not refused"
    # records really were processed twice, and every second time was absorbed by the inbox
    assert f["redelivered"] > 0
    assert f["duplicates"] == f["redelivered"] == f["duplicates_metric"], f
    assert f["dead_lettered"] == 0 and status["reporting"]["dead_lettered"] == 0
    # and the outcome is exactly the oracle's: nothing lost, nothing applied twice
    assert comparison.differences == [], comparison.differences[:20]
    assert comparison.lost == 0 and comparison.duplicated == 0
    assert status["reporting"]["processed_events"] == f["events"]
