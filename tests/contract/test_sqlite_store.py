import pytest

from shared.store.sqlite import SQLiteStore

from .store_contract import StoreContract


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
