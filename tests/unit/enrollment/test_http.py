"""The enrollment HTTP API in-process (no broker: the session arrives by running the policy on the app's store):
status codes and bodies a client of the attendance batch sees."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.enrollment.application.policies import HANDLERS
from services.enrollment.bootstrap import build
from services.enrollment.settings import EnrollmentSettings
from shared.contracts.scheduling import SessionScheduled, TimeSlot
from shared.messaging.envelope import Envelope

NOW = datetime.now(UTC)


@pytest.fixture
async def client(tmp_path, bearer) -> AsyncIterator[httpx.AsyncClient]:
    app = build(EnrollmentSettings(store_url=f"sqlite:///{tmp_path / 'enrollment.db'}", session_wait_seconds=0))
    store = app.state.runtime.store
    await store.open()  # the lifespan (Kafka consumer, relay) is not started: commands only need the store
    start = NOW - timedelta(hours=2)
    event = Envelope(data=SessionScheduled(
        session_id="s1", occurred_at=NOW, course_code="SWC", title="Software Carpentry", delivery="classroom",
        venue_id="room-a", time_zone="Europe/Berlin", capacity=2, cost_centre="CC-1",
        slots=[TimeSlot(starts_at=start, ends_at=start + timedelta(hours=8))]))
    async with store.transaction() as uow:
        await HANDLERS[SessionScheduled](uow, event)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://enrollment",
                                 headers=bearer("enroller")) as c:
        yield c
    await store.close()


async def test_attendance_batch_over_http(client: httpx.AsyncClient) -> None:
    r = await client.post("/sessions/s1/enrollments/batch", json={"learners": ["ann", "bob", "cid"]})
    ann, bob, cid = (e["enrollment_id"] for e in r.json()["results"])  # cid waits: capacity 2

    r = await client.post("/sessions/s1/attendance/batch",
                          json={"records": [{"enrollment_id": ann, "status": "attended"},
                                            {"enrollment_id": cid, "status": "attended"}]})
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["error"] == "not_enrolled" and body["index"] == 1 and body["enrollment_id"] == cid
    assert body["detail"][0]["field"] == "records.1.enrollment_id"
    assert "attendance" not in (await client.get(f"/enrollments/{ann}")).json()  # nothing written

    r = await client.post("/sessions/s1/attendance/batch",
                          json={"records": [{"enrollment_id": ann, "status": "attended"},
                                            {"enrollment_id": bob, "status": "late"}]})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "records.1.status"

    r = await client.post("/sessions/s1/attendance/batch",
                          json={"records": [{"enrollment_id": ann, "status": "attended"},
                                            {"enrollment_id": bob, "status": "no_show"}]})
    assert r.status_code == 200, r.text
    assert [(e["enrollment_id"], e["attendance"], e["changed"]) for e in r.json()["results"]] == [
        (ann, "attended", True), (bob, "no_show", True)]
    assert (await client.get(f"/enrollments/{bob}")).json()["attendance"] == "no_show"

    r = await client.post("/sessions/s2/attendance/batch", json={"records": [{"enrollment_id": ann,
                                                                              "status": "attended"}]})
    assert r.status_code == 404 and r.json()["error"] == "unknown_session"
    r = await client.post("/sessions/s1/attendance/batch", json={"records": [{"enrollment_id": "nope",
                                                                              "status": "attended"}]})
    assert r.status_code == 422 and r.json()["error"] == "unknown_enrollment"


async def test_a_cancellation_needs_no_body_and_promotes_the_first_waiting(client: httpx.AsyncClient) -> None:
    r = await client.post("/sessions/s1/enrollments/batch", json={"learners": ["ann", "bob", "cid"]})
    ann, _, cid = (e["enrollment_id"] for e in r.json()["results"])  # cid waits: capacity 2
    r = await client.post(f"/enrollments/{ann}/cancel")  # no body at all
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["promoted_enrollment_ids"] == [cid]
    assert (await client.post(f"/enrollments/{ann}/cancel", json={})).json()["status"] == "cancelled"  # again: same
    bad = await client.post(f"/enrollments/{ann}/cancel", json={"reason": 5})
    assert bad.status_code == 422
