"""SQLite adapter of the store port: the embedded default, one database file per service.

SQLite calls are short and run on the event loop's thread; one writer connection guarded by an asyncio lock
(``BEGIN IMMEDIATE``: one write transaction at a time, also across processes sharing the file), and a second
connection for reads, which in WAL mode sees only committed data.

The outbox is the event table itself: the relay publishes the events after the position it last published
(table ``published``, one row). That holds because positions are given out in commit order: only one write
transaction runs at a time, so a reader never sees position n+1 committed before n. Appending writes no outbox
row and publishing updates one row, instead of an insert per event and an update per event (measured: the relay's
read and mark went from 22-27 to 9-12 us per event). The Kafka key (the event's subject, its aggregate id) is stored
with the event, so the relay builds records without parsing the event data.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from shared.contracts.base import catalogue
from shared.messaging.envelope import Envelope, encode_headers

from .port import ConcurrencyError, OutboxEntry, RecordedEvent, Store, UnitOfWork

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id      TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    event_id       TEXT    NOT NULL UNIQUE,
    event_type     TEXT    NOT NULL,
    time           TEXT    NOT NULL,
    correlation_id TEXT,
    causation_id   TEXT,
    data           BLOB    NOT NULL,
    subject        TEXT,
    UNIQUE (stream_id, version)
);
CREATE TABLE IF NOT EXISTS inbox (
    consumer     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    key        TEXT NOT NULL,
    body       BLOB NOT NULL,
    UNIQUE (collection, key)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer   TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    partition  INTEGER NOT NULL,
    "offset"   INTEGER NOT NULL,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (consumer, topic, partition)
) WITHOUT ROWID;
"""

EVENT_COLUMNS = "position, stream_id, version, event_id, event_type, time, correlation_id, causation_id, data"

# created after the schema above; an older file's outbox table (one row per event) is migrated into it once
PUBLISHED = """
CREATE TABLE published (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    position   INTEGER NOT NULL,
    updated_at TEXT    NOT NULL
)
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _recorded(row: tuple[Any, ...]) -> RecordedEvent:
    position, stream_id, version, event_id, event_type, time, correlation_id, causation_id, data = row
    if catalogue.current_type(event_type) is None:
        raise LookupError(f"stored event {event_id} has unknown type {event_type}")
    envelope = Envelope(
        data=catalogue.load(event_type, data),  # an older version is upcast to the current model
        id=event_id,
        time=datetime.fromisoformat(time),
        correlation_id=correlation_id,
        causation_id=causation_id,
    )
    return RecordedEvent(position=position, stream_id=stream_id, version=version, envelope=envelope)


class SQLiteUnitOfWork(UnitOfWork):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.appended: int = 0
        # documents written in this transaction, as JSON (None: deleted): read back from here and written once
        # per key at commit (``flush``), so a batch that updates one document per event costs one statement per
        # document instead of a read and a write per event. Serialised at ``put``: later changes of the caller's
        # dict do not leak in.
        self._documents: dict[tuple[str, str], bytes | None] = {}
        self._started = _now()  # processed_at of the inbox claims of this transaction

    def flush(self) -> None:
        """Write the documents of this transaction (called before COMMIT, inside the transaction)."""
        if not self._documents:
            return
        upserts = [(c, k, body) for (c, k), body in self._documents.items() if body is not None]
        deletes = [(c, k) for (c, k), body in self._documents.items() if body is None]
        if upserts:
            self._conn.executemany(
                "INSERT INTO documents (collection, key, body) VALUES (?, ?, ?)"
                " ON CONFLICT (collection, key) DO UPDATE SET body = excluded.body",
                upserts,
            )
        if deletes:
            self._conn.executemany("DELETE FROM documents WHERE collection = ? AND key = ?", deletes)
        self._documents.clear()

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        return _read_stream(self._conn, stream_id, after_version)

    async def append(self, stream_id: str, expected_version: int, events: Sequence[Envelope]) -> int:
        current = self._conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?", (stream_id,)
        ).fetchone()[0]
        if current != expected_version:
            raise ConcurrencyError(stream_id, expected_version)
        rows = [
            (stream_id, expected_version + n, envelope.id, envelope.type, envelope.time.isoformat(),
             envelope.correlation_id, envelope.causation_id, envelope.value(), envelope.subject)
            for n, envelope in enumerate(events, start=1)
        ]
        version = expected_version + len(rows)
        try:
            # stored in the order of the versions; being stored is being queued for the relay (see above)
            self._conn.executemany(
                "INSERT INTO events (stream_id, version, event_id, event_type, time, correlation_id, causation_id,"
                " data, subject) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        except sqlite3.IntegrityError as exc:
            if "stream_id" in str(exc) or "version" in str(exc):
                raise ConcurrencyError(stream_id, expected_version) from exc
            raise
        self.appended += len(events)
        return version

    async def claim(self, consumer: str, event_id: str) -> bool:
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO inbox (consumer, event_id, processed_at) VALUES (?, ?, ?)",
            (consumer, event_id, self._started),
        )
        return cur.rowcount == 1

    async def claim_many(self, consumer: str, event_ids: Sequence[str]) -> list[bool]:
        """A few statements instead of one per id: multi-row ``INSERT OR IGNORE ... RETURNING`` answers which ids
        were new. Inside ``BEGIN IMMEDIATE`` nobody else writes meanwhile. The rows go in pieces of 300, 100, 30,
        10, 3 and 1, so there are six statement texts in all (each is prepared once and cached by the driver;
        one text per batch size would fill its cache with up to 128 large prepared statements)."""
        if len(event_ids) < 2:
            return [await self.claim(consumer, i) for i in event_ids]
        unique = list(dict.fromkeys(event_ids))
        inserted: set[str] = set()
        start = 0
        while start < len(unique):
            size = next(n for n in _CLAIM_PIECES if n <= len(unique) - start)
            params: list[str] = []
            for event_id in unique[start:start + size]:
                params += (consumer, event_id, self._started)
            inserted.update(row[0] for row in self._conn.execute(_claim_statement(size), params).fetchall())
            start += size
        out = []
        for event_id in event_ids:
            out.append(event_id in inserted)
            inserted.discard(event_id)  # the same id later in the list is a duplicate
        return out

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        try:
            body = self._documents[(collection, key)]
        except KeyError:
            return _get(self._conn, collection, key)
        return orjson.loads(body) if body is not None else None

    async def put(self, collection: str, key: str, document: dict[str, Any]) -> None:
        self._documents[(collection, key)] = orjson.dumps(document)

    async def delete(self, collection: str, key: str) -> None:
        self._documents[(collection, key)] = None

    async def save_checkpoint(self, consumer: str, topic: str, partition: int, offset: int) -> None:
        self._conn.execute(
            'INSERT INTO checkpoints (consumer, topic, partition, "offset", updated_at) VALUES (?, ?, ?, ?, ?)'
            ' ON CONFLICT (consumer, topic, partition) DO UPDATE SET "offset" = excluded."offset",'
            " updated_at = excluded.updated_at",
            (consumer, topic, partition, offset, _now()),
        )


_CLAIM_PIECES = (300, 100, 30, 10, 3, 1)  # 3 parameters per row: within SQLite's 999-parameter default


@functools.cache
def _claim_statement(rows: int) -> str:
    values = ",".join(["(?, ?, ?)"] * rows)
    return f"INSERT OR IGNORE INTO inbox (consumer, event_id, processed_at) VALUES {values} RETURNING event_id"


# documents: a table with rowids, not ``WITHOUT ROWID`` (where the whole row is the key of the B-tree and large
# bodies, such as a roster of 500 learners, slow down every write near them: measured 8.1 -> 3.2 us per small
# document written next to 66 KB rosters)
DOCUMENTS_WITH_ROWID = """
CREATE TABLE documents_rowid (
    collection TEXT NOT NULL,
    key        TEXT NOT NULL,
    body       BLOB NOT NULL,
    UNIQUE (collection, key)
)
"""


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a file written by an earlier version up to this schema: idempotent, in one write transaction (two
    processes opening the same file at once: the second finds it done), nothing to do on a new file."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
        if "subject" not in columns:  # older events are published with their key read from the data
            conn.execute("ALTER TABLE events ADD COLUMN subject TEXT")
        tables = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
        if "WITHOUT ROWID" in tables["documents"].upper():
            conn.execute(DOCUMENTS_WITH_ROWID)
            conn.execute("INSERT INTO documents_rowid (collection, key, body)"
                         " SELECT collection, key, body FROM documents ORDER BY collection, key")
            conn.execute("DROP TABLE documents")
            conn.execute("ALTER TABLE documents_rowid RENAME TO documents")
        if "published" not in tables:
            conn.execute(PUBLISHED)
            if "outbox" in tables:  # published up to the event before the first pending entry (or everything)
                position = conn.execute(
                    "SELECT COALESCE((SELECT MIN(event_position) - 1 FROM outbox WHERE published_at IS NULL),"
                    " (SELECT COALESCE(MAX(position), 0) FROM events))"
                ).fetchone()[0]
                conn.execute("DROP TABLE outbox")
            else:
                position = 0
            conn.execute("INSERT INTO published (id, position, updated_at) VALUES (1, ?, ?)", (position, _now()))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _get(conn: sqlite3.Connection, collection: str, key: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT body FROM documents WHERE collection = ? AND key = ?", (collection, key)).fetchone()
    return orjson.loads(row[0]) if row else None


def _read_stream(conn: sqlite3.Connection, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
    rows = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ? AND version > ? ORDER BY version",
        (stream_id, after_version),
    ).fetchall()
    return [_recorded(r) for r in rows]


class SQLiteStore(Store):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        # as in SQLAlchemy: sqlite:///relative/file.db, sqlite:////absolute/file.db
        if not url.startswith("sqlite:///"):
            raise ValueError(f"expected sqlite:///<path>, got {url!r}")
        path = url.removeprefix("sqlite:///")
        if not path or path == ":memory:":
            raise ValueError("an in-memory SQLite store cannot be shared by two connections; use a file")
        return cls(path)

    async def open(self) -> None:
        if self._writer is not None:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = _connect(self.path)
        self._writer.executescript(SCHEMA)
        _migrate(self._writer)
        self._reader = _connect(self.path)

    async def close(self) -> None:
        async with self._lock:
            for conn in (self._writer, self._reader):
                if conn is not None:
                    conn.close()
            self._writer = self._reader = None

    @property
    def _w(self) -> sqlite3.Connection:
        if self._writer is None:
            raise RuntimeError("store is not open")
        return self._writer

    @property
    def _r(self) -> sqlite3.Connection:
        if self._reader is None:
            raise RuntimeError("store is not open")
        return self._reader

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLiteUnitOfWork]:
        async with self._lock:
            conn = self._w
            conn.execute("BEGIN IMMEDIATE")
            uow = SQLiteUnitOfWork(conn)
            try:
                yield uow
                await uow.run_deferred()
                uow.flush()
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        if uow.appended:
            for callback in self.on_commit:
                callback()

    async def ping(self) -> None:
        self._r.execute("SELECT 1").fetchone()

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        return _get(self._r, collection, key)

    async def scan(self, collection: str) -> list[tuple[str, dict[str, Any]]]:
        rows = self._r.execute(
            "SELECT key, body FROM documents WHERE collection = ? ORDER BY key", (collection,)
        ).fetchall()
        return [(k, orjson.loads(b)) for k, b in rows]

    async def data_version(self) -> int | None:
        # SQLite's counter of commits by other connections than this one, the reader: every write of this
        # process goes through the writer connection, so commits of this and of other processes all count
        return int(self._r.execute("PRAGMA data_version").fetchone()[0])

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        return _read_stream(self._r, stream_id, after_version)

    async def read_all(self, after_position: int = 0, batch_size: int = 1000) -> AsyncIterator[RecordedEvent]:
        position = after_position
        while True:
            rows = self._r.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (position, batch_size),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _recorded(row)
            position = rows[-1][0]
            await asyncio.sleep(0)

    async def checkpoints(self, consumer: str) -> dict[tuple[str, int], int]:
        rows = self._r.execute(
            'SELECT topic, partition, "offset" FROM checkpoints WHERE consumer = ?', (consumer,)
        ).fetchall()
        return {(t, p): o for t, p, o in rows}

    async def pending_outbox(self, limit: int) -> list[OutboxEntry]:
        rows = self._r.execute(
            "SELECT position, event_id, event_type, time, correlation_id, causation_id, data, subject FROM events"
            " WHERE position > (SELECT position FROM published WHERE id = 1) ORDER BY position LIMIT ?",
            (limit,),
        ).fetchall()
        entries = []
        resolve = catalogue.resolve
        for position, event_id, event_type, time, correlation_id, causation_id, data, subject in rows:
            cls = resolve(event_type)
            if cls is None:
                raise LookupError(f"outbox holds event {event_id} of unknown type {event_type}")
            if subject is None:  # stored before the subject had a column: read it from the data (not validated
                # again: this service wrote it in the current version of its type)
                subject = cls.model_construct(**orjson.loads(data)).aggregate_id()
            entries.append(
                OutboxEntry(
                    outbox_id=position,
                    event_id=event_id,
                    event_type=event_type,
                    topic=cls.topic,
                    key=subject.encode(),
                    value=bytes(data),
                    headers=encode_headers(
                        id=event_id,
                        source=cls.source,
                        type=event_type,
                        time=time,  # as stored: envelope.time.isoformat()
                        subject=subject,
                        correlation_id=correlation_id,
                        causation_id=causation_id,
                    ),
                )
            )
        return entries

    async def mark_published(self, outbox_ids: Sequence[int]) -> None:
        """The relay publishes pending entries in order: everything up to the highest id given is published."""
        if not outbox_ids:
            return
        async with self._lock:
            self._w.execute(
                "UPDATE published SET position = MAX(position, ?), updated_at = ? WHERE id = 1",
                (max(outbox_ids), _now()),
            )

    async def outbox_backlog(self) -> int:
        return self._r.execute(
            "SELECT COUNT(*) FROM events WHERE position > (SELECT position FROM published WHERE id = 1)"
        ).fetchone()[0]

    async def event_count(self) -> int:
        return self._r.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    async def processed_count(self, consumer: str) -> int:
        return self._r.execute("SELECT COUNT(*) FROM inbox WHERE consumer = ?", (consumer,)).fetchone()[0]
