"""Regression (found by the schemathesis run): a reschedule whose changes are valid on their own but make an
invalid plan with the rest (an explicit null for a list, a classroom left without a venue) was a 500; it is a 422
naming the field, and nothing is written."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.scheduling.application import handlers
from services.scheduling.application.commands import RescheduleSession, ScheduleSession
from shared.commands import Trace
from shared.errors import Invalid
from shared.store.sqlite import SQLiteStore

YEAR = datetime.now(UTC).year + 1


@pytest.fixture
async def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "scheduling.db"))
    await s.open()
    yield s
    await s.close()


@pytest.mark.parametrize("changes, field", [
    ({"equipment_ids": None}, "equipment_ids"),
    ({"instructor_ids": None, "delivery": "classroom"}, "instructor_ids"),
    ({"planned_costs": None}, "planned_costs"),
    ({"delivery": "virtual"}, None),  # a virtual session needs its room: the model says which field
])
async def test_a_reschedule_that_makes_an_invalid_plan_is_422_and_writes_nothing(store, changes, field) -> None:
    plan = {"session_id": "s1", "course_code": "SWC", "title": "SWC", "delivery": "classroom", "venue_id": "room-a",
            "time_zone": "UTC", "capacity": 5, "cost_centre": "CC-1",
            "slots": [{"starts_at": f"{YEAR}-03-01T09:00", "ends_at": f"{YEAR}-03-01T17:00"}]}
    await handlers.schedule_session(store, ScheduleSession.model_validate(plan), Trace())
    before = await store.event_count()
    with pytest.raises(Invalid) as refused:
        await handlers.reschedule_session(store, "s1", RescheduleSession.model_validate(changes), Trace())
    body = refused.value.body()
    assert refused.value.status_code == 422 and body["error"] in ("invalid_plan", "invalid")
    assert body["detail"] and all(d["field"] and d["reason"] for d in body["detail"])
    if field is not None:
        assert body["detail"][0]["field"] == field and "leave the field out" in body["detail"][0]["reason"]
    assert await store.event_count() == before
    assert (await store.get(handlers.SESSIONS, "s1"))["venue_id"] == "room-a"


@pytest.mark.parametrize("changes", [{}, {"capacity": 5}, {"venue_id": "room-a", "time_zone": "UTC"}])
async def test_a_reschedule_that_changes_nothing_writes_nothing(store, changes) -> None:
    plan = {"session_id": "s1", "course_code": "SWC", "title": "SWC", "delivery": "classroom", "venue_id": "room-a",
            "time_zone": "UTC", "capacity": 5, "cost_centre": "CC-1",
            "slots": [{"starts_at": f"{YEAR}-03-01T09:00", "ends_at": f"{YEAR}-03-01T17:00"}]}
    first, _ = await handlers.schedule_session(store, ScheduleSession.model_validate(plan), Trace())
    before = await store.event_count()
    again = await handlers.reschedule_session(store, "s1", RescheduleSession.model_validate(changes), Trace())
    assert await store.event_count() == before and again["version"] == first["version"]
    moved = await handlers.reschedule_session(store, "s1", RescheduleSession.model_validate({"capacity": 6}), Trace())
    assert await store.event_count() == before + 1 and moved["capacity"] == 6
