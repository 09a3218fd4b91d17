"""The storage contract, written once: every store adapter must pass it (subclass ``StoreContract``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from shared.contracts.scheduling import SessionCancelled
from shared.messaging.envelope import Envelope
from shared.store import ConcurrencyError, Store


def event(session_id: str = "s-1", reason: str = "") -> Envelope:
    return Envelope(data=SessionCancelled(session_id=session_id, occurred_at=datetime.now(UTC), reason=reason))


class StoreContract:
    """Subclasses provide an async fixture ``store`` yielding an opened, empty store."""

    async def test_append_and_read_back_in_order(self, store: Store) -> None:
        async with store.transaction() as uow:
            assert await uow.append("session-1", 0, [event(reason="a"), event(reason="b")]) == 2
        async with store.transaction() as uow:
            assert await uow.append("session-1", 2, [event(reason="c")]) == 3
        recorded = await store.read_stream("session-1")
        assert [r.version for r in recorded] == [1, 2, 3]
        assert [r.envelope.data.reason for r in recorded] == ["a", "b", "c"]
        assert await store.read_stream("session-2") == []
        assert [r.version for r in await store.read_stream("session-1", after_version=1)] == [2, 3]
        async with store.transaction() as uow:
            assert [r.envelope.data.reason for r in await uow.read_stream("session-1", after_version=2)] == ["c"]

    async def test_stale_expected_version_is_a_concurrency_error_and_writes_nothing(self, store: Store) -> None:
        async with store.transaction() as uow:
            await uow.append("session-1", 0, [event()])
        with pytest.raises(ConcurrencyError):
            async with store.transaction() as uow:
                await uow.put("views", "x", {"n": 1})
                await uow.append("session-1", 0, [event()])
        assert len(await store.read_stream("session-1")) == 1
        assert await store.get("views", "x") is None
        assert await store.outbox_backlog() == 1

    async def test_concurrent_appends_one_wins(self, store: Store) -> None:
        async def writer(reason: str) -> str:
            try:
                async with store.transaction() as uow:
                    await uow.append("session-9", 0, [event(reason=reason)])
                return "won"
            except ConcurrencyError:
                return "lost"

        results = await asyncio.gather(*(writer(str(n)) for n in range(10)))
        assert results.count("won") == 1 and results.count("lost") == 9
        assert len(await store.read_stream("session-9")) == 1

    async def test_events_and_outbox_entries_commit_together(self, store: Store) -> None:
        with pytest.raises(RuntimeError):
            async with store.transaction() as uow:
                await uow.append("session-1", 0, [event()])
                raise RuntimeError("handler crashed after appending")
        assert await store.read_stream("session-1") == []
        assert await store.outbox_backlog() == 0
        async with store.transaction() as uow:
            await uow.append("session-1", 0, [event("s-1", "x"), event("s-1", "y")])
        pending = await store.pending_outbox(10)
        assert [p.event_type for p in pending] == ["ilt.scheduling.session-cancelled.v1"] * 2
        assert pending[0].key == b"s-1" and pending[0].topic == "ilt.scheduling.events"
        assert dict(pending[0].headers)["ce_id"] == pending[0].event_id.encode()
        await store.mark_published([pending[0].outbox_id])
        assert [p.outbox_id for p in await store.pending_outbox(10)] == [pending[1].outbox_id]
        assert await store.outbox_backlog() == 1

    async def test_inbox_claims_an_event_once_and_rolls_back_with_the_state(self, store: Store) -> None:
        async with store.transaction() as uow:
            assert await uow.claim("reporting", "e-1") is True
            assert await uow.claim("reporting", "e-1") is False
            assert await uow.claim("finance", "e-1") is True
        with pytest.raises(RuntimeError):
            async with store.transaction() as uow:
                assert await uow.claim("reporting", "e-2") is True
                raise RuntimeError
        async with store.transaction() as uow:
            assert await uow.claim("reporting", "e-2") is True
        assert await store.processed_count("reporting") == 2

    async def test_claim_many_answers_like_claim_one_by_one(self, store: Store) -> None:
        async with store.transaction() as uow:
            assert await uow.claim("reporting", "old-7") is True
        ids = [f"e-{i}" for i in range(700)]  # more than one statement's worth in the SQLite adapter
        ids[450] = "old-7"  # claimed by an earlier transaction
        ids[650] = "e-3"  # twice in one batch: only the first is fresh
        async with store.transaction() as uow:
            fresh = await uow.claim_many("reporting", ids)
            assert await uow.claim_many("finance", ["e-1", "e-1"]) == [True, False]  # inboxes are per consumer
        assert fresh == [i not in (450, 650) for i in range(700)]
        assert await store.processed_count("reporting") == 699
        with pytest.raises(RuntimeError):
            async with store.transaction() as uow:
                assert await uow.claim_many("reporting", ["x-1", "x-2", "e-1"]) == [True, True, False]
                raise RuntimeError
        async with store.transaction() as uow:  # rolled back with the transaction
            assert await uow.claim_many("reporting", ["x-1", "x-2"]) == [True, True]

    async def test_deferred_writes_run_at_commit_and_go_with_a_rollback(self, store: Store) -> None:
        async with store.transaction() as uow:
            uow.memo["s-1"] = {"n": 1}
            uow.defer("s-1", lambda: uow.put("views", "s-1", {"n": 1}))
            uow.defer("s-1", lambda: uow.put("views", "s-1", uow.memo["s-1"]))  # replaces the first one
            uow.memo["s-1"] = {"n": 2}
            assert await uow.get("views", "s-1") is None  # not written yet
        assert await store.get("views", "s-1") == {"n": 2}
        with pytest.raises(RuntimeError):
            async with store.transaction() as uow:
                assert uow.memo == {}  # a memo lives for one transaction
                uow.defer("s-2", lambda: uow.put("views", "s-2", {"n": 9}))
                raise RuntimeError
        assert await store.get("views", "s-2") is None

    async def test_documents_and_checkpoints(self, store: Store) -> None:
        async with store.transaction() as uow:
            await uow.put("sessions", "b", {"n": 2})
            await uow.put("sessions", "a", {"n": 1, "nested": {"x": [1, 2]}})
            await uow.put("sessions", "a", {"n": 3})
            await uow.save_checkpoint("reporting", "ilt.scheduling.events", 0, 41)
            await uow.save_checkpoint("reporting", "ilt.scheduling.events", 0, 42)
        assert await store.get("sessions", "a") == {"n": 3}
        assert await store.scan("sessions") == [("a", {"n": 3}), ("b", {"n": 2})]
        async with store.transaction() as uow:
            assert await uow.get("sessions", "b") == {"n": 2}
            await uow.delete("sessions", "b")
        assert await store.scan("sessions") == [("a", {"n": 3})]
        assert await store.checkpoints("reporting") == {("ilt.scheduling.events", 0): 42}

    async def test_data_version_changes_with_every_commit_and_only_then(self, store: Store) -> None:
        first = await store.data_version()
        if first is None:
            pytest.skip("this adapter cannot tell when the store changed (readers then never keep results)")
        assert await store.data_version() == first  # nothing committed in between
        async with store.transaction() as uow:
            await uow.put("views", "a", {"n": 1})
        second = await store.data_version()
        assert second != first
        assert await store.data_version() == second
        async with store.transaction() as uow:
            await uow.append("session-9", 0, [event("s-9")])
        assert await store.data_version() != second

    async def test_read_all_in_storage_order(self, store: Store) -> None:
        for n in range(5):
            async with store.transaction() as uow:
                await uow.append(f"session-{n}", 0, [event(f"s-{n}")])
        seen = [r.envelope.data.session_id async for r in store.read_all(batch_size=2)]
        assert seen == [f"s-{n}" for n in range(5)]
        assert await store.event_count() == 5
