"""In-process members of reporting's consumer group, for the slow-consumer and ordering tests.

Each member is the real ``shared.messaging.consumer.EventConsumer`` named ``reporting`` (so: consumer group
``reporting`` and reporting's inbox) with reporting's real handlers, subscribed to the three event topics through its
own FastStream broker (its own aiokafka consumer, its own group membership). The members of one test share ONE
``SQLiteStore`` on the reporting service's store file: in one process the store's lock serialises their
transactions as ``BEGIN IMMEDIATE`` serialises separate processes (SQLiteStore runs sqlite3 on the event loop, so
two connections of one process waiting on each other's write lock would block the loop).

What is observed, never assumed: the partitions each member holds (a rebalance listener: every revocation and
every assignment, timed), and every record each member is handed (topic, partition, offset), before it is applied.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import inspect
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from faststream.kafka import KafkaBroker

from devstack.broker import free_port
from devstack.stack import ServiceProcess, Stack
from shared.contracts.topics import DEFAULT_PARTITIONS, EVENT_TOPICS, dead_letter_topic
from shared.messaging.consumer import EventConsumer, Handler
from shared.messaging.kafka import Producer
from shared.store.sqlite import SQLiteStore

GROUP = "reporting"
ALL_PARTITIONS = frozenset(TopicPartition(t, p) for t in EVENT_TOPICS for p in range(DEFAULT_PARTITIONS))


class Assignments(ConsumerRebalanceListener):
    """What the member holds now, and every change, timed (``time.monotonic()``)."""

    def __init__(self) -> None:
        self.current: frozenset[TopicPartition] = frozenset()
        self.assigned: list[tuple[float, frozenset[TopicPartition]]] = []
        self.revoked: list[tuple[float, frozenset[TopicPartition]]] = []

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.revoked.append((time.monotonic(), frozenset(revoked)))
        self.current = self.current - frozenset(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.assigned.append((time.monotonic(), frozenset(assigned)))
        self.current = frozenset(assigned)


class LogLines(logging.Handler):
    """The member's FastStream log (e.g. a refused offset commit), kept for the test to look at."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> list[str]:
        return [f"{r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else r.getMessage() for r in self.records]


class Member:
    """One member of reporting's group, in this process. ``options`` go to the FastStream subscriber (aiokafka's
    consumer options such as ``max_poll_interval_ms``); ``pause``, if given, is waited before each batch."""

    def __init__(self, name: str, servers: str, store: SQLiteStore, handlers: dict[type, Handler],
                 producer: Producer, pause: Callable[[], float] | None = None, **options: Any) -> None:
        self.name = name
        self.listener = Assignments()
        self.log = LogLines()
        logger = logging.getLogger(f"reliability.member.{name}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.handlers = [self.log]
        self.consumer = EventConsumer(GROUP, store, handlers, producer, dead_letter_topic(GROUP))
        self.broker = KafkaBroker(servers, logger=logger)
        self.consumer.subscribe(self.broker, *EVENT_TOPICS, listener=self.listener, **options)
        self.delivered: list[tuple[str, int, int]] = []  # every record handed to this member, in order
        self.batches: list[tuple[float, float]] = []  # (handed over, applied) of every batch
        apply = self.consumer.process_batch

        async def observed(records: Any) -> None:
            started = time.monotonic()
            self.delivered += [(r.topic, r.partition, r.offset) for r in records]
            if pause is not None:  # jitter: a pause of ``pause()`` seconds before the batch is applied
                await asyncio.sleep(pause())
            await apply(records)
            self.batches.append((started, time.monotonic()))

        self.consumer.process_batch = observed  # type: ignore[method-assign]

    def refused_commits(self) -> int:
        """Offset commits the group refused (FastStream logs the error of the acknowledgement)."""
        return sum(1 for r in self.log.records
                   if r.exc_info and isinstance(r.exc_info[1], CommitFailedError | IllegalStateError))

    async def start(self) -> None:
        await self.broker.start()

    async def stop(self) -> None:
        await self.broker.stop()


def reporting_process(stack: Stack) -> ServiceProcess:
    """The reporting service as a process on the stack's reporting store (the stack was started without it), made
    part of the stack (stopped with it, included in ``wait_quiescent``); started by the caller.

    Started while the in-process members are still in the group, then they leave: with Tansu a group whose members
    all left after one of them had been evicted (max.poll.interval exceeded) takes no new member (measured: a fresh
    consumer's join was still pending after 6 minutes), while a member joining an active group is taken within
    seconds."""
    env = {**next(iter(stack.processes.values())).env, "REPORTING_HTTP_PORT": str(free_port()),
           "REPORTING_STORE_URL": f"sqlite:///{stack.workdir / 'reporting.db'}"}
    proc = ServiceProcess("reporting", int(env["REPORTING_HTTP_PORT"]), env, stack.workdir / "reporting.log")
    stack.processes["reporting"] = proc
    return proc


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """structlog at WARNING while the members run (unconfigured, it prints a debug line per event applied); the
    previous configuration afterwards."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        yield
    finally:
        structlog.configure(**saved)


def split(members: list[Member]) -> bool:
    """Every member holds some partitions, no partition is held twice, and every partition is held."""
    held = [m.listener.current for m in members]
    return all(held) and sum(map(len, held)) == len(ALL_PARTITIONS) and frozenset().union(*held) == ALL_PARTITIONS


async def wait_until(what: str, condition: Callable[[], Any], timeout: float) -> Any:
    """Poll ``condition`` (a function, or a coroutine function) until it is true (never a fixed sleep);
    TimeoutError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f} s")
        await asyncio.sleep(0.05)


def concurrent_batches(members: list[Member]) -> int:
    """Batches that were handed to a member while another member was working on one of its own."""
    count = 0
    for m in members:
        others = sorted(window for other in members if other is not m for window in other.batches)
        starts = [s for s, _ in others]
        latest_end = list(itertools.accumulate((e for _, e in others), max))
        for start, _ in m.batches:
            before = bisect.bisect_right(starts, start)  # the other batches handed over before this one
            count += before > 0 and latest_end[before - 1] > start
    return count


def redelivered(members: list[Member]) -> int:
    """Records handed out more than once (to any member): deliveries minus distinct records."""
    deliveries = [record for m in members for record in m.delivered]
    return len(deliveries) - len(set(deliveries))
