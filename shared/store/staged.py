"""A unit of work that holds a command's writes back until the command has decided.

A request taken from Kafka runs inside the consumer's transaction, which also holds the inbox claim of the request
(and, in a batch, other records' effects). If the command is refused, its rejection must be the only thing it
leaves behind. ``StagedUnitOfWork`` reads through to that transaction, sees its own writes (read-your-writes), and
writes them to it only on ``commit()``; after a refusal they are simply dropped. No savepoints needed, so it works
on every store adapter.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from shared.messaging.envelope import Envelope

from .port import ConcurrencyError, RecordedEvent, UnitOfWork


class StagedUnitOfWork(UnitOfWork):
    def __init__(self, inner: UnitOfWork) -> None:
        self._inner = inner
        self._ops: list[tuple[str, tuple[Any, ...]]] = []
        self._documents: dict[tuple[str, str], dict[str, Any] | None] = {}  # None: deleted
        self._appended: dict[str, list[RecordedEvent]] = {}

    @property
    def writes(self) -> int:
        return len(self._ops)

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        staged = [r for r in self._appended.get(stream_id, []) if r.version > after_version]
        return [*await self._inner.read_stream(stream_id, after_version=after_version), *staged]

    async def append(self, stream_id: str, expected_version: int, events: Sequence[Envelope]) -> int:
        staged = self._appended.setdefault(stream_id, [])
        if staged:
            moved = staged[-1].version != expected_version
        else:  # the underlying append checks again when the staged writes are committed
            moved = bool(await self._inner.read_stream(stream_id, after_version=expected_version))
        if moved:
            raise ConcurrencyError(stream_id, expected_version)
        for n, envelope in enumerate(events, start=1):
            staged.append(RecordedEvent(position=-1, stream_id=stream_id, version=expected_version + n,
                                        envelope=envelope))
        self._ops.append(("append", (stream_id, expected_version, list(events))))
        return expected_version + len(events)

    async def claim(self, consumer: str, event_id: str) -> bool:
        return await self._inner.claim(consumer, event_id)

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        if (collection, key) in self._documents:
            doc = self._documents[(collection, key)]
            return copy.deepcopy(doc) if doc is not None else None
        return await self._inner.get(collection, key)

    async def put(self, collection: str, key: str, document: dict[str, Any]) -> None:
        self._documents[(collection, key)] = copy.deepcopy(document)
        self._ops.append(("put", (collection, key)))

    async def delete(self, collection: str, key: str) -> None:
        self._documents[(collection, key)] = None
        self._ops.append(("delete", (collection, key)))

    async def save_checkpoint(self, consumer: str, topic: str, partition: int, offset: int) -> None:
        await self._inner.save_checkpoint(consumer, topic, partition, offset)

    async def claim_many(self, consumer: str, event_ids: Sequence[str]) -> list[bool]:
        return await self._inner.claim_many(consumer, event_ids)

    async def commit(self) -> None:
        """Write what was staged, in order, to the underlying unit of work (each document in its last state).
        Deferred writes (``defer``) run first: they are staged writes too."""
        await self.run_deferred()
        ops, self._ops = self._ops, []
        written: set[tuple[str, str]] = set()
        for op, args in ops:
            if op == "append":
                await self._inner.append(*args)
            elif args not in written:
                written.add(args)
                doc = self._documents[args]
                if doc is None:
                    await self._inner.delete(*args)
                else:
                    await self._inner.put(*args, doc)
        self._documents.clear()
        self._appended.clear()

    def discard(self) -> None:
        self.__dict__.pop("_deferred", None)
        self.memo.clear()
        self._ops.clear()
        self._documents.clear()
        self._appended.clear()
