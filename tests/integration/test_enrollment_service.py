"""The enrollment service as a process next to scheduling, on the real broker: HTTP answers and events on the wire."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from shared.contracts.topics import ENROLLMENT_EVENTS, SCHEDULING_EVENTS
from wire import poll, records_of

pytestmark = pytest.mark.integration

YEAR = datetime.now(UTC).year + 1
ENROLLED = "ilt.enrollment.learner-enrolled.v1"
WAITLISTED = "ilt.enrollment.learner-waitlisted.v1"
CANCELLED = "ilt.enrollment.enrollment-cancelled.v1"


@pytest.fixture(scope="module")
def stack(kafka, tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("enrollment-stack"), services=["scheduling", "enrollment"],
               bootstrap_servers=kafka.bootstrap_servers) as running:
        yield running


@pytest.fixture
def http(stack):
    with httpx.Client(timeout=15, headers=stack.headers()) as client:
        yield client


def schedule(http: httpx.Client, stack: Stack, capacity: int, venue: str) -> str:
    session_id = f"s-{uuid.uuid4()}"
    response = http.post(f"{stack.url('scheduling')}/sessions", json={
        "session_id": session_id, "course_code": "SWC", "title": "Software Carpentry", "delivery": "classroom",
        "venue_id": venue, "time_zone": "Europe/Berlin", "capacity": capacity, "cost_centre": "CC-1",
        "slots": [{"starts_at": f"{YEAR}-04-01T09:00", "ends_at": f"{YEAR}-04-01T17:00"}],
    })
    assert response.status_code == 201, response.text
    return session_id


def headers(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


def test_enroll_right_after_scheduling_waitlist_and_promotion_on_the_wire(stack, http, kafka) -> None:
    enrollment = stack.url("enrollment")
    session_id = schedule(http, stack, capacity=2, venue="room-wire")
    # no waiting on our side: enrollment waits for scheduling's event itself
    first = http.post(f"{enrollment}/sessions/{session_id}/enrollments", json={"learner_id": "l1"})
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "enrolled" and first.json()["session_id"] == session_id
    assert http.post(f"{enrollment}/sessions/{session_id}/enrollments", json={"learner_id": "l2"}).status_code == 201
    third = http.post(f"{enrollment}/sessions/{session_id}/enrollments", json={"learner_id": "l3"}).json()
    fourth = http.post(f"{enrollment}/sessions/{session_id}/enrollments", json={"learner_id": "l4"}).json()
    assert (third["status"], third["position"], fourth["status"], fourth["position"]) == \
        ("waitlisted", 1, "waitlisted", 2)
    again = http.post(f"{enrollment}/sessions/{session_id}/enrollments", json={"learner_id": "l1"})
    assert again.status_code == 200 and again.json() == first.json()

    cancel = http.post(f"{enrollment}/enrollments/{first.json()['enrollment_id']}/cancel", json={},
                       headers={"X-Correlation-Id": "corr-wire"})
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    assert cancel.json()["promoted_enrollment_ids"] == [third["enrollment_id"]]
    roster = http.get(f"{enrollment}/sessions/{session_id}/roster").json()
    assert [e["learner_id"] for e in roster["enrolled"]] == ["l2", "l3"]
    assert [(e["learner_id"], e["position"]) for e in roster["waitlist"]] == [("l4", 1)]
    assert roster["enrolled_count"] == 2 and roster["capacity"] == 2
    promoted = http.get(f"{enrollment}/enrollments/{third['enrollment_id']}").json()
    assert promoted["status"] == "enrolled" and promoted["promoted_from_waitlist"] is True

    again = http.post(f"{enrollment}/enrollments/{first.json()['enrollment_id']}/cancel", json={})
    assert again.status_code == 200 and again.json()["promoted_enrollment_ids"] == []
    missing = http.post(f"{enrollment}/enrollments/nope/cancel", json={})
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_enrollment"
    not_started = http.post(f"{enrollment}/enrollments/{third['enrollment_id']}/attendance",
                            json={"status": "attended"})
    assert not_started.status_code == 409 and not_started.json()["error"] == "session_not_started"
    bad = http.post(f"{enrollment}/sessions/{session_id}/enrollments", json={"learner": "l9"})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid"

    records = records_of(kafka.bootstrap_servers, ENROLLMENT_EVENTS, session_id, count=6)
    types = [headers(r)["ce_type"] for r in records]
    assert types == [ENROLLED, ENROLLED, WAITLISTED, WAITLISTED, CANCELLED, ENROLLED]
    assert all(r.key == session_id.encode() and headers(r)["ce_subject"] == session_id for r in records)
    cancellation, promotion = headers(records[4]), headers(records[5])
    assert promotion["ce_causationid"] == cancellation["ce_id"]
    assert promotion["ce_correlationid"] == cancellation["ce_correlationid"] == "corr-wire"
    assert b'"promoted_from_waitlist":true' in records[5].value


def test_capacity_growth_and_session_cancellation_reach_the_roster(stack, http, kafka) -> None:
    enrollment, scheduling = stack.url("enrollment"), stack.url("scheduling")
    session_id = schedule(http, stack, capacity=1, venue="room-cascade")
    batch = http.post(f"{enrollment}/sessions/{session_id}/enrollments/batch", json={"learners": ["a", "b", "c"]})
    assert batch.status_code == 200, batch.text
    assert [(r["learner_id"], r["status"]) for r in batch.json()["results"]] == \
        [("a", "enrolled"), ("b", "waitlisted"), ("c", "waitlisted")]

    assert http.post(f"{scheduling}/sessions/{session_id}/reschedule", json={"capacity": 2}).status_code == 200
    roster = poll(lambda: http.get(f"{enrollment}/sessions/{session_id}/roster").json(),
                  lambda r: r["capacity"] == 2)
    assert [e["learner_id"] for e in roster["enrolled"]] == ["a", "b"] and roster["waitlisted_count"] == 1

    assert http.post(f"{scheduling}/sessions/{session_id}/cancel", json={"reason": "venue closed"}).status_code == 200
    roster = poll(lambda: http.get(f"{enrollment}/sessions/{session_id}/roster").json(),
                  lambda r: r["session_status"] == "cancelled")
    assert roster["enrolled"] == [] and roster["waitlist"] == [] and len(roster["cancelled"]) == 3
    refused = http.post(f"{enrollment}/sessions/{session_id}/enrollments", json={"learner_id": "d"})
    assert refused.status_code == 409 and refused.json()["error"] == "session_cancelled"

    planned = records_of(kafka.bootstrap_servers, SCHEDULING_EVENTS, session_id, count=3)
    rescheduled_id, cancelled_id = headers(planned[1])["ce_id"], headers(planned[2])["ce_id"]
    records = records_of(kafka.bootstrap_servers, ENROLLMENT_EVENTS, session_id, count=7)
    promotion, *cascade = records[3:]
    assert headers(promotion)["ce_type"] == ENROLLED and headers(promotion)["ce_causationid"] == rescheduled_id
    assert [headers(r)["ce_type"] for r in cascade] == [CANCELLED] * 3
    assert {headers(r)["ce_causationid"] for r in cascade} == {cancelled_id}
    assert all(b'"reason":"session_cancelled"' in r.value for r in cascade)


def test_unknown_session_is_a_retryable_404_after_the_wait(stack, http) -> None:
    started = time.monotonic()
    response = http.post(f"{stack.url('enrollment')}/sessions/never-scheduled/enrollments",
                         json={"learner_id": "l1"})
    assert time.monotonic() - started >= 4.5  # ENROLLMENT_SESSION_WAIT_SECONDS defaults to 5
    assert response.status_code == 404 and response.headers["Retry-After"] == "2"
    assert response.json()["error"] == "unknown_session" and response.json()["retryable"] is True
