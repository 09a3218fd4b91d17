"""Event store port and adapters. ``open_store(url)`` picks the adapter from the URL scheme."""

from .port import ConcurrencyError, OutboxEntry, RecordedEvent, Store, UnitOfWork


def open_store(url: str) -> Store:
    """Make (not yet open) the store a URL names:

    - ``sqlite:///relative/file.db`` or ``sqlite:////absolute/file.db``: the embedded default;
    - ``mongodb://host:27017/<database>?replicaSet=rs0`` or ``mongodb+srv://cluster.example.net/<database>``:
      MongoDB (a replica set: transactions are required). The database must be named in the URL path; there
      is no default, so that two services never share a database by accident.
    """
    if url.startswith("sqlite://"):
        from .sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from .mongo import MongoStore

        return MongoStore.from_url(url)
    scheme = url.split("://", 1)[0] if "://" in url else url[:20]
    raise ValueError(
        f"unsupported store URL scheme {scheme!r}: expected sqlite:///<file> or mongodb://<hosts>/<database>"
    )


__all__ = ["ConcurrencyError", "OutboxEntry", "RecordedEvent", "Store", "UnitOfWork", "open_store"]
