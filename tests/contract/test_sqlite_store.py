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
