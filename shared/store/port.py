"""The storage port every service uses: event streams, transactional outbox, inbox, documents, checkpoints.

One ``Store`` per service (its own database). All writes of one command or one consumed event happen in one
``UnitOfWork`` (one transaction): the events, their outbox entries, the inbox entry of the event that caused
them, the documents (state and views) they change and the projection checkpoint. Either all of it is stored or
none of it.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from shared.messaging.envelope import Envelope


class ConcurrencyError(Exception):
    """Someone else appended to the stream since it was read (unique (stream, version) violated)."""

    def __init__(self, stream_id: str, expected_version: int) -> None:
        super().__init__(f"stream {stream_id!r} is no longer at version {expected_version}")
        self.stream_id = stream_id
        self.expected_version = expected_version


@dataclass(frozen=True)
class RecordedEvent:
    position: int
    stream_id: str
    version: int
    envelope: Envelope


@dataclass(slots=True)
class OutboxEntry:
    """A stored event waiting to be published, already encoded for Kafka (made per event by the relay: a plain
    slotted class, not a frozen one, whose constructor costs a third)."""

    outbox_id: int
    event_id: str
    event_type: str
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


class UnitOfWork(abc.ABC):
    """Everything one command or one consumed event writes, in one transaction."""

    # event streams ---------------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        """The stream's events with a version above ``after_version`` (all of them by default; a caller that
        keeps a snapshot of the stream's state reads only what came after it)."""

    @abc.abstractmethod
    async def append(self, stream_id: str, expected_version: int, events: Sequence[Envelope]) -> int:
        """Append after ``expected_version`` (0 = new stream); also queue each event in the outbox.

        Returns the new version. Raises ``ConcurrencyError`` if the stream moved on."""

    # inbox -----------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def claim(self, consumer: str, event_id: str) -> bool:
        """Record that ``consumer`` processes ``event_id``; False if it already did (skip the event)."""

    async def claim_many(self, consumer: str, event_ids: Sequence[str]) -> list[bool]:
        """``claim`` for each id in order (an id twice in the list: only the first is fresh). Adapters answer it
        with a few statements instead of one per event."""
        return [await self.claim(consumer, event_id) for event_id in event_ids]

    # documents: a service's own state and read models ----------------------------------------------------------
    @abc.abstractmethod
    async def get(self, collection: str, key: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def put(self, collection: str, key: str, document: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    async def delete(self, collection: str, key: str) -> None: ...

    # projection checkpoints ------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def save_checkpoint(self, consumer: str, topic: str, partition: int, offset: int) -> None: ...

    # per-transaction memo and deferred writes --------------------------------------------------------------------
    # A projection that updates one document per event keeps the object it loaded in ``memo`` and registers its
    # write with ``defer``: a batch of 500 events about one session loads it once and writes it once, at commit.
    # Deferred writes run (in registration order, the last registration per key) inside the transaction, before
    # it commits; if the transaction fails, memo and deferred writes go with it. An object taken from ``memo``
    # and changed must be written (deferred) again: the memo is what later events of the transaction see.
    @property
    def memo(self) -> dict[Any, Any]:
        memo: dict[Any, Any] = self.__dict__.setdefault("_memo", {})
        return memo

    def defer(self, key: Any, write: Callable[[], Awaitable[None]]) -> None:
        deferred: dict[Any, Callable[[], Awaitable[None]]] = self.__dict__.setdefault("_deferred", {})
        deferred.pop(key, None)
        deferred[key] = write

    async def run_deferred(self) -> None:
        """Called by the adapter just before it commits (and by wrappers before they hand their writes on)."""
        while deferred := self.__dict__.get("_deferred"):  # a deferred write may defer another one
            self.__dict__["_deferred"] = {}
            for write in deferred.values():
                await write()


class Store(abc.ABC):
    """One service's database."""

    def __init__(self) -> None:
        self.on_commit: list[Callable[[], None]] = []  # run after a commit that appended events (wakes the relay)

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[UnitOfWork]: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise if the store cannot be reached."""

    # reads outside a transaction -------------------------------------------------------------------------------
    @abc.abstractmethod
    async def get(self, collection: str, key: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def scan(self, collection: str) -> list[tuple[str, dict[str, Any]]]: ...

    async def data_version(self) -> int | None:
        """A number that changes whenever anyone (this process or another) has committed a change to the store
        since the last call saw it; ``None`` when the adapter cannot tell. Lets a reader keep what it computed
        from the store until the store changes: with ``None`` it must not."""
        return None

    @abc.abstractmethod
    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]: ...

    @abc.abstractmethod
    def read_all(self, after_position: int = 0, batch_size: int = 1000) -> AsyncIterator[RecordedEvent]:
        """Every stored event in the order it was stored (for replays)."""

    @abc.abstractmethod
    async def checkpoints(self, consumer: str) -> dict[tuple[str, int], int]: ...

    # outbox ----------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def pending_outbox(self, limit: int) -> list[OutboxEntry]:
        """The first ``limit`` events not published yet, in the order they were stored."""

    @abc.abstractmethod
    async def mark_published(self, outbox_ids: Sequence[int]) -> None:
        """Record that these entries are published. They are what ``pending_outbox`` gave, from its start, in order
        (the relay publishes in order): an adapter may keep one high-water mark instead of a mark per entry."""

    @abc.abstractmethod
    async def outbox_backlog(self) -> int: ...

    @abc.abstractmethod
    async def event_count(self) -> int: ...

    # inbox (outside a transaction: for tools and tests) --------------------------------------------------------
    @abc.abstractmethod
    async def processed_count(self, consumer: str) -> int: ...
