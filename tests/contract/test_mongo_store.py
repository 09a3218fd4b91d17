"""The store contract on MongoDB (skipped, with the reason, where none is reachable: see conftest.py), plus what
only MongoDB has: two processes writing one database, indexes made at start-up. The URL and error-mapping cases at
the end need no server and always run."""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from shared.store import ConcurrencyError, open_store
from shared.store.mongo import INDEXES, MongoStore, MongoUnitOfWork, TransactionConflict, database_from_url

from .store_contract import StoreContract, event


def _with_database(uri: str, database: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


class TestMongoStore(StoreContract):
    @pytest.fixture
    async def store(self, mongo_uri: str):
        database = f"ilt_contract_{uuid.uuid4().hex[:16]}"
        store = MongoStore(mongo_uri, database, serverSelectionTimeoutMS=10_000)
        await store.open()
        try:
            yield store
        finally:
            await store.close()
            client: AsyncMongoClient = AsyncMongoClient(mongo_uri)
            await client.drop_database(database)
            await client.close()

    async def test_open_store_picks_mongodb_by_url_and_reopens_idempotently(self, store: MongoStore,
                                                                             mongo_uri: str) -> None:
        async with store.transaction() as uow:
            await uow.append("session-1", 0, [event()])
        again = open_store(_with_database(mongo_uri, store.database))
        assert isinstance(again, MongoStore) and again.database == store.database
        await again.open()  # indexes exist already: creating them again is a no-op
        try:
            assert len(await again.read_stream("session-1")) == 1
            for collection, indexes in INDEXES.items():
                names = set(await again._d[collection].index_information())
                assert {ix.document["name"] for ix in indexes} <= names
        finally:
            await again.close()

    async def test_a_second_process_appending_to_the_same_stream_gets_a_concurrency_error(
        self, store: MongoStore, mongo_uri: str
    ) -> None:
        # two replicas of one service: separate clients, no shared lock; the server decides
        other = MongoStore(mongo_uri, store.database)
        await other.open()
        try:
            async with store.transaction() as uow:
                await uow.append("session-1", 0, [event(reason="first")])
                with pytest.raises(ConcurrencyError):
                    async with other.transaction() as theirs:
                        await theirs.put("views", "x", {"n": 1})
                        await theirs.append("session-1", 0, [event(reason="second")])
            assert [r.envelope.data.reason for r in await store.read_stream("session-1")] == ["first"]
            assert await other.get("views", "x") is None
            # once the first committed, the loser's retry sees version 1 and appends after it
            async with other.transaction() as theirs:
                assert await theirs.append("session-1", 1, [event(reason="second")]) == 2
            assert [r.position for r in await store.read_stream("session-1")] == [1, 2]
        finally:
            await other.close()

    async def test_inbox_claimed_by_two_processes_at_once_is_applied_once(self, store: MongoStore,
                                                                          mongo_uri: str) -> None:
        other = MongoStore(mongo_uri, store.database)
        await other.open()
        try:
            async with store.transaction() as uow:
                assert await uow.claim("reporting", "e-1") is True
                with pytest.raises(ConcurrencyError):
                    async with other.transaction() as theirs:
                        await theirs.claim("reporting", "e-1")
            async with other.transaction() as theirs:
                assert await theirs.claim("reporting", "e-1") is False
            assert await store.processed_count("reporting") == 1
        finally:
            await other.close()


# ---- no server needed ---------------------------------------------------------------------------------------------

def test_the_database_comes_from_the_url_path() -> None:
    assert database_from_url("mongodb://mongo:27017/scheduling?replicaSet=rs0") == "scheduling"
    assert database_from_url("mongodb://u:p%2Fw@a:1,b:2/finance?authSource=admin") == "finance"
    assert database_from_url("mongodb+srv://u:pw@cluster0.example.net/reporting?retryWrites=true") == "reporting"
    for url in ("mongodb://mongo:27017", "mongodb://mongo:27017/?replicaSet=rs0", "mongodb://h/a.b"):
        with pytest.raises(ValueError):
            database_from_url(url)


def test_open_store_chooses_the_adapter_by_scheme_without_connecting() -> None:
    store = open_store("mongodb://user:s3cret@mongo:27017/enrollment?replicaSet=rs0")
    assert isinstance(store, MongoStore) and store.database == "enrollment"
    assert "s3cret" not in repr(store)
    assert isinstance(open_store("mongodb+srv://user:pw@cluster0.example.net/finance"), MongoStore)
    with pytest.raises(ValueError, match="must name the service's database") as missing:
        open_store("mongodb://user:s3cret@mongo:27017/?replicaSet=rs0")
    assert "s3cret" not in str(missing.value)
    with pytest.raises(ValueError, match="unsupported store URL scheme 'postgresql'") as other:
        open_store("postgresql://user:s3cret@db/x")
    assert "s3cret" not in str(other.value)


async def test_an_unreachable_server_fails_open_quickly_with_the_driver_error() -> None:
    store = MongoStore("mongodb://127.0.0.1:1/scheduling", "scheduling", serverSelectionTimeoutMS=300)
    started = time.monotonic()
    with pytest.raises(PyMongoError):
        await store.open()
    assert time.monotonic() - started < 10
    with pytest.raises(RuntimeError, match="not open"):
        await store.ping()


DUP_STREAM = "E11000 duplicate key error collection: scheduling.events index: stream_version dup key: { version: 1 }"
DUP_EVENT = "E11000 duplicate key error collection: scheduling.events index: event_id dup key: { event_id: \"e\" }"


def _write_conflict() -> OperationFailure:
    return OperationFailure("WriteConflict error: this operation conflicted with another operation", 112,
                            {"ok": 0, "code": 112, "codeName": "WriteConflict",
                             "errorLabels": ["TransientTransactionError"]})


@pytest.mark.parametrize("error", [
    DuplicateKeyError(DUP_STREAM, 11000, {"index": 0, "code": 11000, "errmsg": DUP_STREAM,
                                          "keyPattern": {"stream_id": 1, "version": 1}}),
    BulkWriteError({"writeErrors": [{"index": 0, "code": 11000, "errmsg": DUP_STREAM,
                                     "keyPattern": {"stream_id": 1, "version": 1}}], "nInserted": 0}),
    BulkWriteError({"writeErrors": [{"index": 0, "code": 11000, "errmsg": DUP_STREAM}], "nInserted": 0}),
    OperationFailure(DUP_STREAM, 11000, {"ok": 0, "code": 11000, "errmsg": DUP_STREAM}),
    _write_conflict(),
], ids=["DuplicateKeyError", "BulkWriteError", "BulkWriteError-message-only", "OperationFailure-11000",
        "WriteConflict"])
def test_a_lost_race_on_a_stream_is_a_concurrency_error(error: PyMongoError) -> None:
    uow = MongoUnitOfWork(db=None, session=None)
    with pytest.raises(ConcurrencyError) as raised:
        with uow._guard("stream 'session-1'", ("session-1", 0)):
            raise error
    assert raised.value.stream_id == "session-1" and raised.value.expected_version == 0
    with pytest.raises(RuntimeError, match="already failed"):  # the server aborted it: no more operations
        with uow._guard("document views/x"):
            pass


def test_the_same_event_id_twice_is_not_mistaken_for_a_race() -> None:
    uow = MongoUnitOfWork(db=None, session=None)
    with pytest.raises(DuplicateKeyError):
        with uow._guard("stream 'session-1'", ("session-1", 0)):
            raise DuplicateKeyError(DUP_EVENT, 11000, {"code": 11000, "errmsg": DUP_EVENT,
                                                       "keyPattern": {"event_id": 1}})


def test_a_conflict_on_a_document_or_inbox_entry_is_retryable() -> None:
    uow = MongoUnitOfWork(db=None, session=None)
    with pytest.raises(TransactionConflict) as raised:
        with uow._guard("inbox reporting/e-1"):
            raise _write_conflict()
    assert isinstance(raised.value, ConcurrencyError) and "inbox reporting/e-1" in str(raised.value)
    other = MongoUnitOfWork(db=None, session=None)
    with pytest.raises(OperationFailure):  # anything else passes through unchanged
        with other._guard("document views/x"):
            raise OperationFailure("not primary", 10107, {"ok": 0, "code": 10107})
