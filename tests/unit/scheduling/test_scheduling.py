"""Scheduling rules through the command handlers, against a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.scheduling.application import handlers
from services.scheduling.application.commands import CancelSession, RescheduleSession, ScheduleSession
from shared.commands import Trace
from shared.errors import Conflict, Invalid, NotFound
from shared.store.sqlite import SQLiteStore

YEAR = datetime.now(UTC).year + 1


@pytest.fixture
async def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "scheduling.db"))
    await s.open()
    yield s
    await s.close()


def body(**overrides) -> ScheduleSession:
    data = {
        "course_code": "SWC", "title": "Software Carpentry", "delivery": "classroom", "venue_id": "room-a",
        "time_zone": "Europe/Berlin", "capacity": 20, "cost_centre": "CC-1", "instructor_ids": ["ann"],
        "equipment_ids": ["projector-1"],
        "slots": [{"starts_at": f"{YEAR}-03-01T09:00", "ends_at": f"{YEAR}-03-01T17:00"},
                  {"starts_at": f"{YEAR}-03-02T09:00", "ends_at": f"{YEAR}-03-02T17:00"}],
        "planned_costs": [{"category": "venue_hire", "amount": {"amount": "300.00", "currency": "EUR"},
                           "cost_centre": "CC-1"}],
    }
    data.update(overrides)
    return ScheduleSession.model_validate(data)


async def schedule(store, **overrides):
    view, _ = await handlers.schedule_session(store, body(**overrides), Trace())
    return view


async def test_schedule_stores_event_with_local_times_and_zone(store) -> None:
    view = await schedule(store)
    events = await store.read_stream(f"session-{view['session_id']}")
    assert [r.envelope.type for r in events] == ["ilt.scheduling.session-scheduled.v1"]
    data = events[0].envelope.data
    assert data.time_zone == "Europe/Berlin"
    assert data.slots[0].starts_at.isoformat() == f"{YEAR}-03-01T09:00:00+01:00"
    assert data.planned_costs[0].amount.amount == 300
    assert await store.outbox_backlog() == 1


@pytest.mark.parametrize(
    ("overrides", "resource"),
    [
        ({"venue_id": "room-b", "equipment_ids": []}, "instructor"),
        ({"instructor_ids": ["bob"], "equipment_ids": []}, "venue"),
        ({"instructor_ids": ["bob"], "venue_id": "room-b"}, "equipment"),
    ],
)
async def test_overlap_of_any_resource_is_a_409_naming_the_session(store, overrides, resource) -> None:
    first = await schedule(store)
    later = [{"starts_at": f"{YEAR}-03-02T16:00", "ends_at": f"{YEAR}-03-02T18:00"}]
    with pytest.raises(Conflict) as err:
        await schedule(store, slots=later, **overrides)
    assert err.value.code == "booking_conflict"
    conflict = err.value.details["conflicts"][0]
    assert conflict["resource_type"] == resource
    assert conflict["conflicting_session_id"] == first["session_id"]
    assert await store.event_count() == 1  # the rejected command wrote nothing


async def test_back_to_back_and_between_days_is_no_conflict(store) -> None:
    await schedule(store)
    await schedule(store, slots=[{"starts_at": f"{YEAR}-03-01T17:00", "ends_at": f"{YEAR}-03-01T20:00"}])
    await schedule(store, slots=[{"starts_at": f"{YEAR}-03-01T22:00", "ends_at": f"{YEAR}-03-02T08:00"}])
    assert await store.event_count() == 3


async def test_same_wall_clock_in_another_time_zone_is_compared_in_absolute_time(store) -> None:
    await schedule(store)
    # 09:00 in New York is 15:00 in Berlin: overlaps the Berlin day
    with pytest.raises(Conflict):
        await schedule(store, time_zone="America/New_York",
                       slots=[{"starts_at": f"{YEAR}-03-01T09:00", "ends_at": f"{YEAR}-03-01T10:00"}])


async def test_cancel_frees_the_resources_and_is_idempotent(store) -> None:
    first = await schedule(store)
    cancelled = await handlers.cancel_session(store, first["session_id"], CancelSession(reason="ill"), Trace())
    assert cancelled["status"] == "cancelled"
    again = await handlers.cancel_session(store, first["session_id"], CancelSession(), Trace())
    assert again["version"] == cancelled["version"]
    await schedule(store)  # the same slot is free again
    with pytest.raises(Conflict) as err:
        await handlers.reschedule_session(store, first["session_id"], RescheduleSession(capacity=5), Trace())
    assert err.value.code == "session_cancelled"


async def test_reschedule_checks_conflicts_but_not_against_itself(store) -> None:
    a = await schedule(store)
    b = await schedule(store, instructor_ids=["bob"], venue_id="room-b", equipment_ids=[],
                       slots=[{"starts_at": f"{YEAR}-04-01T09:00", "ends_at": f"{YEAR}-04-01T17:00"}])
    moved = await handlers.reschedule_session(
        store, a["session_id"],
        RescheduleSession(slots=[{"starts_at": f"{YEAR}-03-01T10:00", "ends_at": f"{YEAR}-03-01T18:00"}]), Trace())
    assert moved["version"] == 2 and moved["slots"][0]["starts_at"].startswith(f"{YEAR}-03-01T10:00")
    with pytest.raises(Conflict) as err:
        await handlers.reschedule_session(store, b["session_id"], RescheduleSession(venue_id="room-a", slots=[
            {"starts_at": f"{YEAR}-03-01T12:00", "ends_at": f"{YEAR}-03-01T13:00"}]), Trace())
    assert err.value.details["conflicts"][0]["conflicting_session_id"] == a["session_id"]
    assert (await store.get(handlers.SESSIONS, b["session_id"]))["venue_id"] == "room-b"


async def test_session_across_midnight_and_daylight_saving_change(store) -> None:
    # Europe/Berlin switches to summer time on the last Sunday of March at 02:00 -> 03:00
    march_end = max(datetime(YEAR, 3, d) for d in range(25, 32) if datetime(YEAR, 3, d).weekday() == 6)
    day = march_end.date()
    view = await schedule(store, slots=[{"starts_at": f"{day - timedelta(days=1)}T22:00",
                                         "ends_at": f"{day}T04:00"}])
    start = datetime.fromisoformat(view["slots"][0]["starts_at"])
    end = datetime.fromisoformat(view["slots"][0]["ends_at"])
    assert end - start == timedelta(hours=5)  # one hour less: the clock jumped
    with pytest.raises(Invalid, match="does not exist"):
        await schedule(store, venue_id="room-z", instructor_ids=[], equipment_ids=[],
                       slots=[{"starts_at": f"{day}T02:30", "ends_at": f"{day}T05:00"}])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"delivery": "virtual"}, "virtual_room_id"),
        ({"venue_id": None}, "venue_id"),
        ({"slots": [{"starts_at": f"{YEAR}-03-01T10:00", "ends_at": f"{YEAR}-03-01T09:00"}]}, "slots.0.ends_at"),
        ({"slots": [{"starts_at": f"{YEAR}-03-01T09:00", "ends_at": f"{YEAR}-03-01T12:00"},
                    {"starts_at": f"{YEAR}-03-01T11:00", "ends_at": f"{YEAR}-03-01T13:00"}]}, "slots"),
        ({"slots": [{"starts_at": "2001-03-01T09:00", "ends_at": "2001-03-01T12:00"}]}, "slots"),
    ],
)
async def test_invalid_plans_name_the_field_and_write_nothing(store, overrides, field) -> None:
    with pytest.raises(Invalid) as err:
        await schedule(store, **overrides)
    assert err.value.details["detail"][0]["field"] == field
    assert await store.event_count() == 0


async def test_historical_import_must_say_it_back_dates(store) -> None:
    past = [{"starts_at": "2015-03-01T09:00", "ends_at": "2015-03-01T17:00"}]
    with pytest.raises(Invalid, match="backdated"):
        await schedule(store, slots=past, as_of="2015-01-01T00:00:00Z")
    view = await schedule(store, slots=past, as_of="2015-01-01T00:00:00Z", backdated=True)
    event = (await store.read_stream(f"session-{view['session_id']}"))[0].envelope.data
    assert event.backdated is True and event.occurred_at.year == 2015


async def test_same_client_id_twice_is_idempotent_and_other_plan_is_409(store) -> None:
    v1, created = await handlers.schedule_session(store, body(session_id="swc-1"), Trace())
    v2, created_again = await handlers.schedule_session(store, body(session_id="swc-1"), Trace())
    assert created and not created_again and v1 == v2
    with pytest.raises(Conflict) as err:
        await handlers.schedule_session(store, body(session_id="swc-1", capacity=99), Trace())
    assert err.value.code == "session_exists"
    assert await store.event_count() == 1


async def test_unknown_session_is_404(store) -> None:
    with pytest.raises(NotFound):
        await handlers.cancel_session(store, "nope", CancelSession(), Trace())


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"slots": [{"starts_at": "9999-12-31T09:00", "ends_at": "9999-12-31T23:59"}]}, "slots.0.starts_at", "between"),
        ({"time_zone": "America/New_York",
          "slots": [{"starts_at": "9999-12-31T20:00", "ends_at": "9999-12-31T23:00"}]}, "slots.0.starts_at", "between"),
        ({"slots": [{"starts_at": f"{YEAR}-10-31T02:30", "ends_at": f"{YEAR}-10-31T05:00"}]}, "slots.0.starts_at",
         "twice"),
        ({"delivery": "virtual", "virtual_room_id": "zoom-1"}, "venue_id", "no venue"),
        ({"virtual_room_id": "zoom-1"}, "virtual_room_id", "no virtual room"),
        ({"instructor_ids": ["", "x"]}, "instructor_ids.0", "1-128"),
        ({"instructor_ids": ["x" * 129]}, "instructor_ids.0", "1-128"),
        ({"planned_costs": [{"category": "venue", "amount": {"amount": "1.00", "currency": "ZZZ"},
                             "cost_centre": "CC-1"}]}, "planned_costs.0.amount.currency", "ISO 4217"),
    ],
)
async def test_implausible_plans_are_refused_naming_the_field(store, overrides, field, reason) -> None:
    if "slots" in overrides and "10-31" in overrides["slots"][0]["starts_at"]:
        # the last Sunday of October: Europe/Berlin falls back from 03:00 to 02:00
        day = max(datetime(YEAR, 10, d) for d in range(25, 32) if datetime(YEAR, 10, d).weekday() == 6).date()
        overrides = {"slots": [{"starts_at": f"{day}T02:30", "ends_at": f"{day}T05:00"}]}
    with pytest.raises(Invalid) as err:
        await schedule(store, **overrides)
    assert err.value.details["detail"][0]["field"] == field
    assert reason in err.value.details["detail"][0]["reason"]
    assert await store.event_count() == 0


def test_capacity_must_be_a_real_integer() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        body(capacity=True)


async def test_times_with_another_offset_keep_the_instant_in_the_sessions_zone(store) -> None:
    view = await schedule(store, slots=[{"starts_at": f"{YEAR}-03-01T17:00+09:00",
                                         "ends_at": f"{YEAR}-03-01T20:00+09:00"}])
    start = datetime.fromisoformat(view["slots"][0]["starts_at"])
    assert view["slots"][0]["starts_at"] == f"{YEAR}-03-01T09:00:00+01:00"
    assert start == datetime.fromisoformat(f"{YEAR}-03-01T17:00+09:00")
