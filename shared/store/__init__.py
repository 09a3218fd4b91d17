"""Event store port and adapters. ``open_store(url)`` picks the adapter from the URL scheme."""

from .port import ConcurrencyError, OutboxEntry, RecordedEvent, Store, UnitOfWork


def open_store(url: str) -> Store:
    """``sqlite:///path/to/file.db`` (the embedded default) or ``sqlite:///:memory:`` for tests."""
    if url.startswith("sqlite://"):
        from .sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    raise ValueError(f"unsupported store URL {url!r}: expected sqlite:///<file>")


__all__ = ["ConcurrencyError", "OutboxEntry", "RecordedEvent", "Store", "UnitOfWork", "open_store"]
