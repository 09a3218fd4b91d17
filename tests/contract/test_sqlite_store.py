import sqlite3

import pytest

from shared.store.sqlite import SQLiteStore

from .store_contract import StoreContract, event


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    async def store(self, tmp_path):
        store = SQLiteStore(str(tmp_path / "store.db"))
        await store.open()
        yield store
        await store.close()


async def test_data_version_sees_a_commit_of_another_process_on_the_same_file(tmp_path) -> None:
    reader, writer = SQLiteStore(str(tmp_path / "store.db")), SQLiteStore(str(tmp_path / "store.db"))
    await reader.open()
    await writer.open()
    try:
        before = await reader.data_version()
        async with writer.transaction() as uow:
            await uow.put("views", "a", {"n": 1})
        assert await reader.data_version() != before
    finally:
        await reader.close()
        await writer.close()


OLD_SCHEMA = """
CREATE TABLE events (position INTEGER PRIMARY KEY AUTOINCREMENT, stream_id TEXT NOT NULL, version INTEGER NOT NULL,
    event_id TEXT NOT NULL UNIQUE, event_type TEXT NOT NULL, time TEXT NOT NULL, correlation_id TEXT,
    causation_id TEXT, data BLOB NOT NULL, UNIQUE (stream_id, version));
CREATE TABLE outbox (outbox_id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_position INTEGER NOT NULL REFERENCES events(position), published_at TEXT);
CREATE TABLE inbox (consumer TEXT NOT NULL, event_id TEXT NOT NULL, processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)) WITHOUT ROWID;
CREATE TABLE documents (collection TEXT NOT NULL, key TEXT NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (collection, key)) WITHOUT ROWID;
CREATE TABLE checkpoints (consumer TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    "offset" INTEGER NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (consumer, topic, partition)) WITHOUT ROWID;
"""


async def test_a_file_of_the_earlier_schema_is_migrated_keeping_documents_and_what_was_not_published(tmp_path):
    """Earlier versions kept an outbox row per event and documents in a WITHOUT ROWID table: opening such a file
    keeps every document and publishes exactly the events whose outbox rows were pending, with the right key."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    for n in (1, 2, 3):
        e = event(f"s-{n}")
        conn.execute("INSERT INTO events (stream_id, version, event_id, event_type, time, data)"
                     " VALUES (?, 1, ?, ?, ?, ?)", (f"session-s-{n}", e.id, e.type, e.time.isoformat(), e.value()))
        conn.execute("INSERT INTO outbox (event_position, published_at) VALUES (?, ?)",
                     (n, "2026-01-01T00:00:00+00:00" if n == 1 else None))
    conn.execute("INSERT INTO documents VALUES ('rosters', 's-1', ?)", (b'{"n": 1}',))
    conn.commit()
    conn.close()
    for n in (1, 2):  # the second opening finds nothing to do
        store = SQLiteStore(str(path))
        await store.open()
        try:
            pending = await store.pending_outbox(10)
            assert [(p.outbox_id, p.key) for p in pending] == [(2, b"s-2"), (3, b"s-3")]
            assert await store.get("rosters", "s-1") == {"n": n}
            async with store.transaction() as uow:
                await uow.put("rosters", "s-1", {"n": n + 1})
            assert await store.scan("rosters") == [("s-1", {"n": n + 1})]
        finally:
            await store.close()
    conn = sqlite3.connect(path)
    tables = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
    conn.close()
    assert "outbox" not in tables and "WITHOUT ROWID" not in tables["documents"].upper()
