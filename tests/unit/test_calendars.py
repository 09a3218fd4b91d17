"""Calendar feeds (iCalendar, RFC 5545) per instructor and venue (scheduling) and per learner (enrollment), read back
with the ``icalendar`` package: local times in each session's own time zone, VTIMEZONE included, across a
daylight-saving change; cancelled sessions leave the feeds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from icalendar import Calendar

from services.enrollment.application.policies import HANDLERS as ENROLLMENT_POLICIES
from services.enrollment.bootstrap import build as build_enrollment
from services.enrollment.settings import EnrollmentSettings
from services.scheduling.bootstrap import build as build_scheduling
from services.scheduling.settings import SchedulingSettings
from shared.contracts.scheduling import SessionCancelled, SessionScheduled, TimeSlot
from shared.messaging.envelope import Envelope

YEAR = datetime.now(UTC).year + 2
DST_SUNDAY = max(d for d in range(25, 32) if datetime(YEAR, 3, d).weekday() == 6)  # clocks go forward in Berlin


@pytest.fixture
async def scheduling(tmp_path, bearer) -> AsyncIterator[httpx.AsyncClient]:
    app = build_scheduling(SchedulingSettings(store_url=f"sqlite:///{tmp_path / 'scheduling.db'}"))
    store = app.state.runtime.store
    await store.open()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scheduling",
                                 headers=bearer("scheduler")) as c:
        yield c
    await store.close()


def events_of(response: httpx.Response) -> tuple[Calendar, list]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/calendar")
    calendar = Calendar.from_ical(response.content)
    return calendar, sorted(calendar.walk("VEVENT"), key=lambda e: e.decoded("dtstart"))


def local(event, name: str = "dtstart") -> tuple[str, str]:
    value = event.decoded(name)
    return str(value.tzinfo), value.strftime("%Y-%m-%d %H:%M")


async def test_instructor_and_venue_feeds_keep_each_sessions_time_zone(scheduling) -> None:
    two_days = {"session_id": "berlin-1", "course_code": "SWC", "title": "Software Carpentry",
                "delivery": "classroom", "venue_id": "berlin-room-a", "time_zone": "Europe/Berlin", "capacity": 20,
                "cost_centre": "CC-1", "instructor_ids": ["ins-ada"],
                "slots": [{"starts_at": f"{YEAR}-03-{DST_SUNDAY - 1}T09:00", "ends_at": f"{YEAR}-03-{DST_SUNDAY - 1}T17:00"},
                          {"starts_at": f"{YEAR}-03-{DST_SUNDAY}T09:00", "ends_at": f"{YEAR}-03-{DST_SUNDAY}T17:00"}]}
    new_york = {"session_id": "nyc-1", "course_code": "DC", "title": "Data Carpentry", "delivery": "virtual",
                "virtual_room_id": "zoom-7", "time_zone": "America/New_York", "capacity": 30, "cost_centre": "CC-1",
                "instructor_ids": ["ins-ada"],
                "slots": [{"starts_at": f"{YEAR}-04-10T10:00", "ends_at": f"{YEAR}-04-10T16:00"}]}
    cancelled = {**new_york, "session_id": "nyc-2", "virtual_room_id": "zoom-8",
                 "slots": [{"starts_at": f"{YEAR}-04-11T10:00", "ends_at": f"{YEAR}-04-11T16:00"}]}
    for body in (two_days, new_york, cancelled):
        assert (await scheduling.post("/sessions", json=body)).status_code == 201
    assert (await scheduling.post("/sessions/nyc-2/cancel", json={"reason": "instructor ill"})).status_code == 200

    calendar, events = events_of(await scheduling.get("/calendars/instructors/ins-ada.ics"))
    assert [str(e["uid"]) for e in events] == ["berlin-1-1@scheduling.ilt", "berlin-1-2@scheduling.ilt",
                                               "nyc-1-1@scheduling.ilt"]
    assert [local(e) for e in events] == [("Europe/Berlin", f"{YEAR}-03-{DST_SUNDAY - 1} 09:00"),
                                          ("Europe/Berlin", f"{YEAR}-03-{DST_SUNDAY} 09:00"),
                                          ("America/New_York", f"{YEAR}-04-10 10:00")]
    # the same wall-clock time on both days, one hour apart in UTC: the zone's rules travel with the feed
    first, second = (e.decoded("dtstart").astimezone(UTC) for e in events[:2])
    assert (first.hour, second.hour) == (8, 7)
    assert {str(tz["tzid"]) for tz in calendar.walk("VTIMEZONE")} == {"Europe/Berlin", "America/New_York"}
    assert b"TZID=Europe/Berlin" in (await scheduling.get("/calendars/instructors/ins-ada.ics")).content
    assert str(events[0]["summary"]) == "SWC: Software Carpentry (day 1 of 2)"
    assert str(events[0]["location"]) == "berlin-room-a" and str(events[2]["location"]) == "virtual room zoom-7"
    assert local(events[2], "dtend") == ("America/New_York", f"{YEAR}-04-10 16:00")

    _, venue = events_of(await scheduling.get("/calendars/venues/berlin-room-a.ics"))
    assert [str(e["uid"]) for e in venue] == ["berlin-1-1@scheduling.ilt", "berlin-1-2@scheduling.ilt"]
    _, nobody = events_of(await scheduling.get("/calendars/instructors/ins-unknown.ics"))
    assert nobody == []

    # rescheduled: the feed follows, same UIDs, higher SEQUENCE
    moved = await scheduling.post("/sessions/nyc-1/reschedule", json={
        "slots": [{"starts_at": f"{YEAR}-04-12T13:00", "ends_at": f"{YEAR}-04-12T17:00"}]})
    assert moved.status_code == 200, moved.text
    _, events = events_of(await scheduling.get("/calendars/instructors/ins-ada.ics"))
    assert local(events[2]) == ("America/New_York", f"{YEAR}-04-12 13:00") and int(events[2]["sequence"]) == 2


async def test_learner_feed_shows_seats_and_waitlist_places(tmp_path, bearer) -> None:
    app = build_enrollment(EnrollmentSettings(store_url=f"sqlite:///{tmp_path / 'enrollment.db'}",
                                              session_wait_seconds=0))
    store = app.state.runtime.store
    await store.open()
    try:
        tokyo = ZoneInfo("Asia/Tokyo")
        for session_id, capacity, zone, day in (("tokyo-1", 1, "Asia/Tokyo", 5), ("tokyo-2", 5, "Asia/Tokyo", 6),
                                                ("tokyo-3", 5, "Asia/Tokyo", 7)):
            start = datetime(YEAR, 5, day, 9, 30, tzinfo=tokyo)
            event = Envelope(data=SessionScheduled(
                session_id=session_id, occurred_at=datetime.now(UTC), course_code="LC", title="Library Carpentry",
                delivery="classroom", venue_id="tokyo-hall", time_zone=zone, capacity=capacity, cost_centre="CC-1",
                slots=[TimeSlot(starts_at=start, ends_at=start + timedelta(hours=7))]))
            async with store.transaction() as uow:
                await ENROLLMENT_POLICIES[SessionScheduled](uow, event)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://enrollment",
                                     headers=bearer("enroller")) as client:
            for session_id, learner in (("tokyo-1", "learner-kim"), ("tokyo-1", "learner-lee"),
                                        ("tokyo-2", "learner-lee"), ("tokyo-3", "learner-lee")):
                r = await client.post(f"/sessions/{session_id}/enrollments", json={"learner_id": learner})
                assert r.status_code == 201, r.text
            async with store.transaction() as uow:
                await ENROLLMENT_POLICIES[SessionCancelled](uow, Envelope(data=SessionCancelled(
                    session_id="tokyo-3", occurred_at=datetime.now(UTC))))

            calendar, events = events_of(await client.get("/calendars/learners/learner-lee.ics"))
            assert [(str(e["summary"]), str(e["status"])) for e in events] == [
                ("LC: Library Carpentry (waitlist, position 1)", "TENTATIVE"),
                ("LC: Library Carpentry", "CONFIRMED")]
            assert [local(e) for e in events] == [("Asia/Tokyo", f"{YEAR}-05-05 09:30"),
                                                  ("Asia/Tokyo", f"{YEAR}-05-06 09:30")]
            assert [str(tz["tzid"]) for tz in calendar.walk("VTIMEZONE")] == ["Asia/Tokyo"]
            assert str(events[0]["location"]) == "tokyo-hall"
            _, kim = events_of(await client.get("/calendars/learners/learner-kim.ics"))
            assert [str(e["status"]) for e in kim] == ["CONFIRMED"]
            _, nobody = events_of(await client.get("/calendars/learners/learner-nobody.ics"))
            assert nobody == []
    finally:
        await store.close()


async def test_an_id_with_a_line_break_still_gets_a_well_formed_calendar(scheduling) -> None:
    """Found by the OpenAPI fuzzing: a control character in the path must not break the content lines."""
    calendar, events = events_of(await scheduling.get("/calendars/instructors/ada%0Alovelace%08.ics"))
    assert events == [] and str(calendar["x-wr-calname"]) == "Teaching: ada lovelace "
