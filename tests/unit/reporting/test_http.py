"""Reporting's HTTP read API, in process (the real app, without starting Kafka), over a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from services.reporting.application.policies import HANDLERS
from services.reporting.application.queries import Answers
from services.reporting.bootstrap import build
from services.reporting.settings import ReportingSettings
from shared.contracts.base import Money
from shared.contracts.enrollment import LearnerEnrolled
from shared.contracts.finance import BudgetAllocated
from shared.contracts.scheduling import SessionCancelled, SessionScheduled
from shared.messaging.envelope import Envelope
from shared.store.sqlite import SQLiteStore

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def scheduled(session_id: str, course_code: str, venue: str, start: str, capacity: int) -> SessionScheduled:
    return SessionScheduled(
        occurred_at=NOW, session_id=session_id, course_code=course_code, title=course_code, delivery="classroom",
        venue_id=venue, time_zone="Europe/London", capacity=capacity, cost_centre="CC/training",
        slots=[{"starts_at": start, "ends_at": start.replace("09:00", "17:00")}],
    )


def enrolled(session_id: str, n: int) -> LearnerEnrolled:
    return LearnerEnrolled(occurred_at=NOW, enrollment_id=f"{session_id}-{n}", session_id=session_id,
                           learner_id=f"l{n}")


@pytest.fixture
async def client(tmp_path, bearer):
    app = build(ReportingSettings(store_url=f"sqlite:///{tmp_path / 'reporting.db'}"))
    store = app.state.runtime.store
    await store.open()
    events = [
        scheduled("2030/a", "SWC", "room-a", "2030-03-02T09:00:00+00:00", 4),
        scheduled("b", "DC", "room-b", "2031-06-02T09:00:00+01:00", 10),
        scheduled("c", "SWC", "room-b", "2030-11-02T09:00:00+00:00", 5),
        SessionCancelled(occurred_at=NOW, session_id="c"),
        *(enrolled("2030/a", n) for n in range(3)),
        *(enrolled("b", n) for n in range(2)),
        BudgetAllocated(occurred_at=NOW, allocation_id="a1", cost_centre="CC/training", period="2030",
                        amount=Money(amount=Decimal("100"), currency="EUR")),
    ]
    for event in events:
        envelope = Envelope(data=event)
        async with store.transaction() as uow:
            await HANDLERS[type(event)](uow, envelope)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://reporting",
                                 headers=bearer("reader")) as c:
        yield c
    await store.close()


async def test_totals_and_filters(client) -> None:
    body = (await client.get("/occupancy/totals")).json()
    assert body == {"sessions": 2, "virtual_sessions": 0, "cancelled_sessions": 1, "capacity": 14, "enrolled": 5,
                    "waitlisted": 0, "attended": 0, "no_show": 0, "fill_rate": 0.3571, "awaiting_schedule": 0}
    body = (await client.get("/occupancy/totals", params={"year": 2030})).json()
    assert (body["sessions"], body["cancelled_sessions"], body["fill_rate"]) == (1, 1, 0.75)


async def test_sessions_list_filters_and_single_session(client) -> None:
    listed = (await client.get("/occupancy/sessions")).json()
    assert [s["session_id"] for s in listed["sessions"]] == ["2030/a", "c", "b"] and listed["count"] == 3
    assert [s["session_id"] for s in (await client.get(
        "/occupancy/sessions", params={"venue": "room-b", "course_code": "SWC"})).json()["sessions"]] == ["c"]
    one = await client.get("/occupancy/sessions/2030/a")
    assert one.status_code == 200 and one.json()["enrolled"] == 3 and one.json()["fill_rate"] == 0.75
    missing = await client.get("/occupancy/sessions/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_session"


async def test_rollups(client) -> None:
    by_venue = (await client.get("/occupancy/by-venue")).json()["by_venue"]
    assert [(r["venue"], r["sessions"], r["cancelled_sessions"], r["enrolled"]) for r in by_venue] == [
        ("room-a", 1, 0, 3), ("room-b", 1, 1, 2)]
    by_course = (await client.get("/occupancy/by-course")).json()["by_course"]
    assert [(r["course_code"], r["capacity"]) for r in by_course] == [("DC", 10), ("SWC", 4)]
    by_month = (await client.get("/occupancy/by-month")).json()["by_month"]
    assert [r["month"] for r in by_month] == ["2030-03", "2030-11", "2031-06"]
    by_year = (await client.get("/occupancy/by-year")).json()["by_year"]
    assert [(r["year"], r["fill_rate"]) for r in by_year] == [(2030, 0.75), (2031, 0.2)]


async def test_budgets(client) -> None:
    listed = (await client.get("/budgets", params={"period": "2030"})).json()
    assert listed["budgets"] == [{"cost_centre": "CC/training", "period": "2030", "currency": "EUR",
                                  "allocated": "100.00", "committed": "0.00", "actual": "0.00",
                                  "remaining": "100.00"}]
    assert (await client.get("/budgets", params={"period": "2031"})).json()["budgets"] == []
    one = await client.get("/budgets/CC/training")
    assert one.status_code == 200 and one.json()["budgets"][0]["remaining"] == "100.00"
    missing = await client.get("/budgets/CC-unknown")
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_cost_centre"


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/occupancy/totals", {"year": "twenty"}, "query.year"),
    ("/occupancy/by-month", {"year": "0"}, "query.year"),
    ("/budgets", {"period": "30"}, "query.period"),
])
async def test_bad_filters_are_422_naming_the_field(client, path, params, field) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid" and response.json()["detail"][0]["field"] == field


async def test_answers_are_kept_until_the_projections_change_also_by_another_writer(client, tmp_path) -> None:
    before = (await client.get("/occupancy/sessions", params={"course_code": "SWC"})).json()
    assert [s["enrolled"] for s in before["sessions"]] == [3, 0]
    assert (await client.get("/occupancy/totals")).json()["enrolled"] == 5
    # a second writer on the same file (another process, an operator tool): the answers follow at once
    other = SQLiteStore(str(tmp_path / "reporting.db"))
    await other.open()
    try:
        async with other.transaction() as uow:
            await HANDLERS[LearnerEnrolled](uow, Envelope(data=enrolled("2030/a", 9)))
    finally:
        await other.close()
    after = (await client.get("/occupancy/sessions", params={"course_code": "SWC"})).json()
    assert [s["enrolled"] for s in after["sessions"]] == [4, 0]
    assert (await client.get("/occupancy/totals")).json()["enrolled"] == 6
    assert (await client.get("/occupancy/by-course")).json()["by_course"][-1]["enrolled"] == 4


async def test_an_unchanged_store_answers_from_what_was_computed(tmp_path) -> None:
    store = SQLiteStore(str(tmp_path / "r.db"))
    await store.open()
    computed = []

    async def compute() -> dict:
        computed.append(1)
        return {"n": len(computed)}

    answers = Answers(store, kept=2)
    try:
        assert [await answers.get("a", compute) for _ in range(3)] == [{"n": 1}] * 3
        async with store.transaction() as uow:
            await uow.put("occupancy-sessions", "x", {"session_id": "x"})
        assert await answers.get("a", compute) == {"n": 2}  # the store changed: computed again
        await answers.get("b", compute)
        await answers.get("c", compute)  # beyond ``kept``: the oldest answer goes
        assert await answers.get("a", compute) == {"n": 5}
    finally:
        await store.close()


async def test_an_answer_overtaken_by_a_newer_store_state_is_not_kept(tmp_path) -> None:
    store = SQLiteStore(str(tmp_path / "r.db"))
    await store.open()
    answers = Answers(store)

    async def fresh() -> dict:
        return {"state": "after the commit"}

    async def overtaken() -> dict:  # read before a commit lands; another request answers after it meanwhile
        async with store.transaction() as uow:
            await uow.put("occupancy-sessions", "x", {"session_id": "x"})
        await answers.get("a", fresh)
        return {"state": "before the commit"}

    try:
        assert await answers.get("a", overtaken) == {"state": "before the commit"}  # its caller gets it ...
        assert await answers.get("a", overtaken) == {"state": "after the commit"}  # ... but it is not kept
    finally:
        await store.close()
