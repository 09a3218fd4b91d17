"""MongoDB adapter of the store port (PyMongo's async API, ``AsyncMongoClient``): the production store.

One database per service, named in the URL path (``mongodb://host:27017/scheduling?replicaSet=rs0``).

Why a replica set (and not a single "commit document")
-------------------------------------------------------
Events and their outbox entries alone could be written atomically without a transaction, as one commit document
per append. But a unit of work is more than that: the inbox entry of the event being consumed, the documents
(state and read models) the handler changes and the projection checkpoint must be stored together with the
events, or a crash between two writes applies an event twice or loses its effect. Those live in other
collections and other documents, so only a multi-document transaction covers them, and MongoDB runs
transactions only on a replica set (or a sharded cluster). A single-node replica set (``mongod --replSet rs0``
+ ``rs.initiate()``) is enough; ``open()`` refuses a standalone server with a clear message.

How the port's guarantees are kept
----------------------------------
- Every ``Store.transaction()`` is one session with one transaction (``start_transaction``: read concern
  ``snapshot``, write concern ``majority``, primary). Leaving the block normally commits; an exception aborts, so
  nothing of it is stored. ``with_transaction`` is not used: it re-runs its callback on transient errors, but the
  body of a unit of work is the caller's code, which the store cannot run again; callers already run a command
  again on ``ConcurrencyError``. The commit itself is retried while its outcome is unknown, as
  ``with_transaction`` does (committing the same transaction again is safe).
- ``events`` has a unique index on ``(stream_id, version)``: a concurrent append to the same stream fails with a
  duplicate key (``DuplicateKeyError``, or ``BulkWriteError``/``OperationFailure`` with code 11000) or, when the
  other transaction has not committed yet, a write conflict (code 112). Both become ``ConcurrencyError`` — the
  transaction is then aborted by the server, nothing is written, and the caller runs its command again.
- The global position (``read_all`` order, outbox order) comes from a counter document incremented inside the
  append's transaction. Two transactions cannot both increment it (the second gets a write conflict), so
  positions are given out in commit order without gaps: a reader never sees position n+1 before n.
  The price: appends of one service's database are serialised. Within a process the adapter runs one write
  transaction at a time (an asyncio lock, as the SQLite adapter does); replicas of a service that append at the
  same moment see a ``ConcurrencyError`` and retry.
- The inbox claim is an upsert on the unique ``(consumer, event_id)`` index that reports whether it inserted:
  inside a transaction a failed insert would abort the whole transaction, so duplicates are never provoked.
- Two transactions writing the same document or inbox entry: the second gets a write conflict, raised as
  ``TransactionConflict`` (a ``ConcurrencyError``: run again). Other transient errors inside a transaction (an
  election, a lost connection) are not disguised: they propagate as PyMongo errors, after the abort.
- Documents are kept as JSON text (as in the SQLite adapter), so exactly the same values come back.
- Indexes are created by ``open()``, idempotently (same name and keys: no-op).

One ``AsyncMongoClient`` per event loop, created in ``open()`` (the service's lifespan) and closed in
``close()``; nothing connects before ``open()``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import pymongo
from bson.int64 import Int64
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.read_preferences import ReadPreference
from pymongo.write_concern import WriteConcern

from shared.contracts.base import catalogue
from shared.messaging.envelope import Envelope, encode_headers

from .port import ConcurrencyError, OutboxEntry, RecordedEvent, Store, UnitOfWork

DUPLICATE_KEY = 11000
WRITE_CONFLICT = 112
MAX_TIME_EXPIRED = 50
COMMIT_RETRY_SECONDS = 30.0
PING_TIMEOUT_SECONDS = 3.0

EVENTS, OUTBOX, INBOX, DOCUMENTS, CHECKPOINTS, COUNTERS = (
    "events", "outbox", "inbox", "documents", "checkpoints", "counters"
)
POSITION_COUNTER = "events"
STREAM_VERSION_INDEX = "stream_version"

INDEXES: dict[str, list[IndexModel]] = {
    EVENTS: [
        IndexModel([("stream_id", ASCENDING), ("version", ASCENDING)], name=STREAM_VERSION_INDEX, unique=True),
        IndexModel([("event_id", ASCENDING)], name="event_id", unique=True),
    ],
    OUTBOX: [IndexModel([("published_at", ASCENDING), ("_id", ASCENDING)], name="pending")],
    INBOX: [IndexModel([("consumer", ASCENDING), ("event_id", ASCENDING)], name="consumer_event", unique=True)],
    DOCUMENTS: [IndexModel([("collection", ASCENDING), ("key", ASCENDING)], name="collection_key", unique=True)],
    CHECKPOINTS: [
        IndexModel([("consumer", ASCENDING), ("topic", ASCENDING), ("partition", ASCENDING)],
                   name="consumer_topic_partition", unique=True)
    ],
}

_INVALID_DATABASE_CHARS = set('/\\. "$')


def database_from_url(url: str) -> str:
    """The database named in the path of a ``mongodb://`` or ``mongodb+srv://`` URL (required: no default,
    because two services must never share a database by accident)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mongodb", "mongodb+srv"):
        raise ValueError(f"expected a mongodb:// or mongodb+srv:// URL, got scheme {parts.scheme!r}")
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ValueError(
            "the MongoDB URL must name the service's database in its path, e.g. "
            "mongodb://mongo:27017/scheduling?replicaSet=rs0"
        )
    if _INVALID_DATABASE_CHARS & set(name) or "\x00" in name or len(name.encode()) >= 64:
        raise ValueError(f"{name!r} is not a valid MongoDB database name")
    return name


def is_duplicate_key(exc: BaseException) -> bool:
    """A unique index refused a write: DuplicateKeyError, or a bulk/command error carrying code 11000."""
    if isinstance(exc, BulkWriteError):
        return any(e.get("code") == DUPLICATE_KEY for e in exc.details.get("writeErrors", []))
    return isinstance(exc, OperationFailure) and exc.code == DUPLICATE_KEY


def duplicate_index(exc: BaseException) -> str | None:
    """Which unique index a duplicate-key error is about: from its key pattern, else from the server's message
    (``E11000 duplicate key error collection: db.events index: stream_version dup key: ...``)."""
    details: Any = getattr(exc, "details", None) or {}
    errors = [details]
    if isinstance(exc, BulkWriteError):
        errors = [e for e in details.get("writeErrors", []) if e.get("code") == DUPLICATE_KEY]
    for error in errors:
        pattern = error.get("keyPattern")
        if pattern:
            return STREAM_VERSION_INDEX if set(pattern) == {"stream_id", "version"} else "_".join(pattern)
        message = str(error.get("errmsg", ""))
        if "index: " in message:
            return message.split("index: ", 1)[1].split(" ", 1)[0]
    return None


def is_write_conflict(exc: BaseException) -> bool:
    """Another transaction wrote the same document first (code 112, labelled TransientTransactionError)."""
    return isinstance(exc, OperationFailure) and exc.code == WRITE_CONFLICT


class TransactionConflict(ConcurrencyError):
    """A concurrent transaction wrote the same document (not an event stream): nothing was stored; run again."""

    def __init__(self, what: str) -> None:
        Exception.__init__(self, f"{what} was written by a concurrent transaction; nothing was stored")
        self.stream_id = what
        self.expected_version = -1


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _recorded(doc: dict[str, Any]) -> RecordedEvent:
    if catalogue.current_type(doc["event_type"]) is None:
        raise LookupError(f"stored event {doc['event_id']} has unknown type {doc['event_type']}")
    envelope = Envelope(
        data=catalogue.load(doc["event_type"], doc["data"]),  # an older version is upcast to the current model
        id=doc["event_id"],
        time=datetime.fromisoformat(doc["time"]),
        correlation_id=doc.get("correlation_id"),
        causation_id=doc.get("causation_id"),
    )
    return RecordedEvent(position=doc["_id"], stream_id=doc["stream_id"], version=doc["version"], envelope=envelope)


def _outbox_entry(doc: dict[str, Any]) -> OutboxEntry:
    cls = catalogue.resolve(doc["event_type"])
    if cls is None:
        raise LookupError(f"outbox holds event {doc['event_id']} of unknown type {doc['event_type']}")
    data: str = doc["data"]
    event = cls.model_validate_json(data)
    at = datetime.fromisoformat(doc["time"])
    return OutboxEntry(
        outbox_id=doc["_id"],
        event_id=doc["event_id"],
        event_type=doc["event_type"],
        topic=cls.topic,
        key=event.aggregate_id().encode(),
        value=data.encode(),
        headers=encode_headers(
            id=doc["event_id"],
            source=cls.source,
            type=doc["event_type"],
            time=at,
            subject=event.aggregate_id(),
            correlation_id=doc.get("correlation_id"),
            causation_id=doc.get("causation_id"),
        ),
    )


class MongoUnitOfWork(UnitOfWork):
    """The writes of one transaction; every operation carries the transaction's session."""

    def __init__(self, db: Any, session: Any) -> None:
        self._db = db
        self._session = session
        self.appended = 0
        self._failed: BaseException | None = None

    @contextmanager
    def _guard(self, what: str, stream: tuple[str, int] | None = None) -> Iterator[None]:
        """Map conflicts to ConcurrencyError. After any server error the transaction is aborted server-side, so
        the unit of work refuses further operations instead of failing later with NoSuchTransaction."""
        if self._failed is not None:
            raise RuntimeError("this transaction already failed and is being aborted") from self._failed
        try:
            yield
        except PyMongoError as exc:
            self._failed = exc
            if stream is not None:  # an append: another writer got to the stream (or to the position counter) first
                if is_write_conflict(exc) or (is_duplicate_key(exc) and duplicate_index(exc) in (STREAM_VERSION_INDEX, None)):
                    raise ConcurrencyError(*stream) from exc
                raise  # e.g. the same event id appended twice: a bug, not a race
            if is_write_conflict(exc) or is_duplicate_key(exc):  # two upserts of the same inbox entry or document
                raise TransactionConflict(what) from exc
            raise

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        with self._guard(f"stream {stream_id!r}"):
            query = {"stream_id": stream_id, "version": {"$gt": after_version}}
            docs = await self._db[EVENTS].find(query, session=self._session).sort(
                "version", ASCENDING).to_list()
        return [_recorded(d) for d in docs]

    async def append(self, stream_id: str, expected_version: int, events: Sequence[Envelope]) -> int:
        stream = (stream_id, expected_version)
        with self._guard(f"stream {stream_id!r}", stream):
            last = await self._db[EVENTS].find_one(
                {"stream_id": stream_id}, projection={"version": True}, sort=[("version", DESCENDING)],
                session=self._session,
            )
            current = last["version"] if last else 0
            if current != expected_version:
                raise ConcurrencyError(stream_id, expected_version)
            if not events:
                return expected_version
            counter = await self._db[COUNTERS].find_one_and_update(
                {"_id": POSITION_COUNTER}, {"$inc": {"position": Int64(len(events))}}, upsert=True,
                return_document=ReturnDocument.AFTER, session=self._session,
            )
            first = counter["position"] - len(events) + 1
            docs = [
                {
                    "_id": first + n,
                    "stream_id": stream_id,
                    "version": expected_version + 1 + n,
                    "event_id": envelope.id,
                    "event_type": envelope.type,
                    "time": envelope.time.isoformat(),
                    "correlation_id": envelope.correlation_id,
                    "causation_id": envelope.causation_id,
                    "data": envelope.value().decode(),
                }
                for n, envelope in enumerate(events)
            ]
            await self._db[EVENTS].insert_many(docs, ordered=True, session=self._session)
            await self._db[OUTBOX].insert_many(
                [{"_id": d["_id"], "published_at": None} for d in docs], ordered=True, session=self._session
            )
        self.appended += len(events)
        return expected_version + len(events)

    async def claim(self, consumer: str, event_id: str) -> bool:
        with self._guard(f"inbox {consumer}/{event_id}"):
            result = await self._db[INBOX].update_one(
                {"consumer": consumer, "event_id": event_id}, {"$setOnInsert": {"processed_at": _now()}},
                upsert=True, session=self._session,
            )
        return result.upserted_id is not None

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        with self._guard(f"document {collection}/{key}"):
            doc = await self._db[DOCUMENTS].find_one({"collection": collection, "key": key}, session=self._session)
        return orjson.loads(doc["body"]) if doc else None

    async def put(self, collection: str, key: str, document: dict[str, Any]) -> None:
        # kept as JSON text, exactly as the SQLite adapter does: the same values come back (no BSON datetime
        # truncation, no restrictions on '.' or '$' in keys), and documents stay readable in mongosh
        body = orjson.dumps(document).decode()
        with self._guard(f"document {collection}/{key}"):
            await self._db[DOCUMENTS].update_one(
                {"collection": collection, "key": key}, {"$set": {"body": body}}, upsert=True, session=self._session
            )

    async def delete(self, collection: str, key: str) -> None:
        with self._guard(f"document {collection}/{key}"):
            await self._db[DOCUMENTS].delete_one({"collection": collection, "key": key}, session=self._session)

    async def save_checkpoint(self, consumer: str, topic: str, partition: int, offset: int) -> None:
        with self._guard(f"checkpoint {consumer}/{topic}/{partition}"):
            await self._db[CHECKPOINTS].update_one(
                {"consumer": consumer, "topic": topic, "partition": partition},
                {"$set": {"offset": offset, "updated_at": _now()}}, upsert=True, session=self._session,
            )


class MongoStore(Store):
    """One service's MongoDB database (a replica set member or mongos: transactions are required)."""

    def __init__(self, url: str, database: str, **client_options: Any) -> None:
        super().__init__()
        self.url = url
        self.database = database
        self._client_options = client_options
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db: Any = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str) -> MongoStore:
        return cls(url, database_from_url(url))

    def __repr__(self) -> str:  # never the URL: it may hold a password
        return f"MongoStore(database={self.database!r})"

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return
        # one client per event loop: a client made on another loop cannot be used (nor closed) from this one
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            self.url, appname=f"ilt-{self.database}", **self._client_options
        )
        try:
            db = client.get_database(self.database)
            hello = await client.admin.command("hello")
            if hello.get("isreplicaset") and "setName" not in hello:
                raise RuntimeError("the MongoDB replica set is not initiated yet: run rs.initiate() once")
            if "setName" not in hello and hello.get("msg") != "isdbgrid":
                raise RuntimeError(
                    "MongoDB is a standalone server: the store needs transactions, which need a replica set "
                    "(start mongod with --replSet rs0 and run rs.initiate() once)"
                )
            for collection, indexes in INDEXES.items():
                await db[collection].create_indexes(indexes)
            await db[COUNTERS].update_one(
                {"_id": POSITION_COUNTER}, {"$setOnInsert": {"position": Int64(0)}}, upsert=True
            )
        except BaseException:
            await client.close()
            raise
        self._client, self._db, self._loop = client, db, loop
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        async with self._lock:  # let a transaction in flight finish first
            client, self._client, self._db, self._loop = self._client, None, None, None
        if client is not None:
            await client.close()

    @property
    def _d(self) -> Any:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MongoUnitOfWork]:
        db = self._d
        assert self._client is not None
        async with self._lock:
            async with self._client.start_session() as session:
                await session.start_transaction(
                    read_concern=ReadConcern("snapshot"),
                    write_concern=WriteConcern("majority"),
                    read_preference=ReadPreference.PRIMARY,
                )
                uow = MongoUnitOfWork(db, session)
                try:
                    yield uow
                    await uow.run_deferred()
                except BaseException:
                    if session.in_transaction:
                        await session.abort_transaction()  # errors are ignored by PyMongo (spec)
                    raise
                if uow._failed is not None:  # the body swallowed a server error: the server aborted already
                    if session.in_transaction:
                        await session.abort_transaction()
                    raise RuntimeError("a failed transaction cannot commit") from uow._failed
                await self._commit(session)
        if uow.appended:
            for callback in self.on_commit:
                callback()

    async def _commit(self, session: Any) -> None:
        # as PyMongo's with_transaction does for the commit: a commit whose result is unknown (network error,
        # election) is retried until it is known; commitTransaction is idempotent for the same transaction
        deadline = time.monotonic() + COMMIT_RETRY_SECONDS
        delay = 0.05
        while True:
            try:
                await session.commit_transaction()
                return
            except PyMongoError as exc:
                unknown = exc.has_error_label("UnknownTransactionCommitResult")
                timed_out = isinstance(exc, OperationFailure) and exc.code == MAX_TIME_EXPIRED
                if unknown and not timed_out and time.monotonic() < deadline:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                if is_write_conflict(exc):
                    raise TransactionConflict("a document of this transaction") from exc
                raise

    async def ping(self) -> None:
        with pymongo.timeout(PING_TIMEOUT_SECONDS):
            await self._d.command("ping")

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        doc = await self._d[DOCUMENTS].find_one({"collection": collection, "key": key})
        return orjson.loads(doc["body"]) if doc else None

    async def scan(self, collection: str) -> list[tuple[str, dict[str, Any]]]:
        docs = await self._d[DOCUMENTS].find({"collection": collection}).sort("key", ASCENDING).to_list()
        return [(d["key"], orjson.loads(d["body"])) for d in docs]

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        query = {"stream_id": stream_id, "version": {"$gt": after_version}}
        docs = await self._d[EVENTS].find(query).sort("version", ASCENDING).to_list()
        return [_recorded(d) for d in docs]

    async def read_all(self, after_position: int = 0, batch_size: int = 1000) -> AsyncIterator[RecordedEvent]:
        position = after_position
        while True:
            docs = await self._d[EVENTS].find({"_id": {"$gt": position}}).sort("_id", ASCENDING).limit(
                batch_size).to_list()
            if not docs:
                return
            for doc in docs:
                yield _recorded(doc)
            position = docs[-1]["_id"]

    async def checkpoints(self, consumer: str) -> dict[tuple[str, int], int]:
        docs = await self._d[CHECKPOINTS].find({"consumer": consumer}).to_list()
        return {(d["topic"], d["partition"]): d["offset"] for d in docs}

    async def pending_outbox(self, limit: int) -> list[OutboxEntry]:
        pending = await self._d[OUTBOX].find({"published_at": None}, projection={"_id": True}).sort(
            "_id", ASCENDING).limit(limit).to_list()
        ids = [p["_id"] for p in pending]
        if not ids:
            return []
        events = await self._d[EVENTS].find({"_id": {"$in": ids}}).sort("_id", ASCENDING).to_list()
        if len(events) != len(ids):
            missing = sorted(set(ids) - {e["_id"] for e in events})
            raise LookupError(f"outbox entries {missing[:10]} have no stored event")
        return [_outbox_entry(e) for e in events]

    async def mark_published(self, outbox_ids: Sequence[int]) -> None:
        if not outbox_ids:
            return
        await self._d[OUTBOX].update_many(
            {"_id": {"$in": list(outbox_ids)}, "published_at": None}, {"$set": {"published_at": _now()}}
        )

    async def outbox_backlog(self) -> int:
        return await self._d[OUTBOX].count_documents({"published_at": None})

    async def event_count(self) -> int:
        # the counter equals the number of stored events: it moves only inside the transactions that insert them
        counter = await self._d[COUNTERS].find_one({"_id": POSITION_COUNTER})
        return counter["position"] if counter else 0

    async def processed_count(self, consumer: str) -> int:
        return await self._d[INBOX].count_documents({"consumer": consumer})
