"""The SQLite unit of work writes documents once at commit: inside the transaction reads see its own writes,
the caller's dict is copied at put, a rollback writes nothing, deletes win over earlier puts."""

from __future__ import annotations

import pytest

from shared.store.sqlite import SQLiteStore


@pytest.fixture
async def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "docs.db"))
    await s.open()
    yield s
    await s.close()


async def test_reads_own_writes_and_commits_last_value(store: SQLiteStore) -> None:
    async with store.transaction() as uow:
        doc = {"enrolled": 1}
        await uow.put("sessions", "s1", doc)
        doc["enrolled"] = 99  # changed after put: not what was written
        assert await uow.get("sessions", "s1") == {"enrolled": 1}
        for n in range(2, 501):
            await uow.put("sessions", "s1", {"enrolled": n})
        assert await store.get("sessions", "s1") is None  # not visible outside before the commit
    assert await store.get("sessions", "s1") == {"enrolled": 500}


async def test_rollback_writes_nothing(store: SQLiteStore) -> None:
    async with store.transaction() as uow:
        await uow.put("sessions", "s1", {"enrolled": 1})
    with pytest.raises(RuntimeError):
        async with store.transaction() as uow:
            await uow.put("sessions", "s1", {"enrolled": 2})
            await uow.put("sessions", "s2", {"enrolled": 1})
            raise RuntimeError("handler failed")
    assert await store.get("sessions", "s1") == {"enrolled": 1}
    assert await store.get("sessions", "s2") is None


async def test_delete_after_put_and_put_after_delete(store: SQLiteStore) -> None:
    async with store.transaction() as uow:
        await uow.put("sessions", "gone", {"a": 1})
        await uow.put("sessions", "back", {"a": 1})
    async with store.transaction() as uow:
        await uow.put("sessions", "gone", {"a": 2})
        await uow.delete("sessions", "gone")
        assert await uow.get("sessions", "gone") is None
        await uow.delete("sessions", "back")
        await uow.put("sessions", "back", {"a": 3})
    assert await store.get("sessions", "gone") is None
    assert await store.get("sessions", "back") == {"a": 3}
