"""What the operator tools do to a service's store beyond the store port: reset a consumer's state, release an
inbox claim. Implemented for the two adapters (SQLite, MongoDB); each runs in one transaction."""

from __future__ import annotations

from typing import Any

from shared.store import Store


def _sqlite(store: Store) -> Any:
    from shared.store.sqlite import SQLiteStore

    return store if isinstance(store, SQLiteStore) else None


def _mongo(store: Store) -> Any:
    try:
        from shared.store.mongo import MongoStore
    except ImportError:  # pragma: no cover - pymongo is a dependency
        return None
    return store if isinstance(store, MongoStore) else None


async def reset_consumer(store: Store, consumer: str, keep_collections: tuple[str, ...]) -> dict[str, int]:
    """Delete every document except those of ``keep_collections``, and ``consumer``'s inbox and checkpoints.
    For a store that only holds a projection (reporting): afterwards it is as new, apart from what is kept."""
    if (sqlite := _sqlite(store)) is not None:
        async with sqlite._lock:
            conn = sqlite._w
            conn.execute("BEGIN IMMEDIATE")
            try:
                marks = ",".join("?" for _ in keep_collections) or "''"
                docs = conn.execute(f"DELETE FROM documents WHERE collection NOT IN ({marks})",
                                    keep_collections).rowcount
                inbox = conn.execute("DELETE FROM inbox WHERE consumer = ?", (consumer,)).rowcount
                checkpoints = conn.execute("DELETE FROM checkpoints WHERE consumer = ?", (consumer,)).rowcount
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return {"documents": docs, "inbox": inbox, "checkpoints": checkpoints}
    if (mongo := _mongo(store)) is not None:
        from shared.store import mongo as m

        async with mongo.transaction() as uow:  # the adapter's own transaction (snapshot, majority)
            db, session = uow._db, uow._session
            docs = await db[m.DOCUMENTS].delete_many({"collection": {"$nin": list(keep_collections)}}, session=session)
            inbox = await db[m.INBOX].delete_many({"consumer": consumer}, session=session)
            checkpoints = await db[m.CHECKPOINTS].delete_many({"consumer": consumer}, session=session)
        return {"documents": docs.deleted_count, "inbox": inbox.deleted_count,
                "checkpoints": checkpoints.deleted_count}
    raise NotImplementedError(f"no reset for {type(store).__name__}")


async def claimed_at(store: Store, consumer: str, event_id: str) -> str | None:
    """When ``consumer`` claimed ``event_id`` in its inbox (ISO time), or None."""
    if (sqlite := _sqlite(store)) is not None:
        row = sqlite._r.execute("SELECT processed_at FROM inbox WHERE consumer = ? AND event_id = ?",
                                (consumer, event_id)).fetchone()
        return row[0] if row else None
    if (mongo := _mongo(store)) is not None:
        from shared.store import mongo as m

        doc = await mongo._db[m.INBOX].find_one({"consumer": consumer, "event_id": event_id})
        if doc is None:
            return None
        at = doc.get("processed_at")
        return at.isoformat() if hasattr(at, "isoformat") else str(at or "")
    raise NotImplementedError(f"no inbox access for {type(store).__name__}")


async def release_claim(store: Store, consumer: str, event_id: str) -> bool:
    """Forget that ``consumer`` saw ``event_id`` (so a redriven record is applied). True if there was a claim."""
    if (sqlite := _sqlite(store)) is not None:
        async with sqlite._lock:
            cursor = sqlite._w.execute("DELETE FROM inbox WHERE consumer = ? AND event_id = ?", (consumer, event_id))
        return cursor.rowcount > 0
    if (mongo := _mongo(store)) is not None:
        from shared.store import mongo as m

        result = await mongo._db[m.INBOX].delete_one({"consumer": consumer, "event_id": event_id})
        return result.deleted_count > 0
    raise NotImplementedError(f"no inbox access for {type(store).__name__}")
