"""Requests taken from Kafka by scheduling, enrollment and finance: through the real consumer (inbox, batches,
dead letters) and the same command handlers as HTTP, against real SQLite stores. What a sender sees is what is in
the outbox: the events its request caused and exactly one outcome, with the request's id as causation id."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from services.enrollment.application import requests as enrollment_requests
from services.enrollment.application.policies import HANDLERS as ENROLLMENT_POLICIES
from services.finance.application import requests as finance_requests
from services.finance.application.policies import HANDLERS as FINANCE_POLICIES
from services.scheduling.application import requests as scheduling_requests
from shared.contracts.requests import (
    AllocateBudgetRequested,
    CancelEnrollmentRequested,
    EnrollLearnerRequested,
    RecordCostRequested,
    ScheduleSessionRequested,
)
from shared.contracts.scheduling import SessionCancelled, SessionScheduled, TimeSlot
from shared.contracts.topics import ENROLLMENT_REQUESTS, FINANCE_REQUESTS, SCHEDULING_EVENTS, SCHEDULING_REQUESTS
from shared.messaging.consumer import DEAD_LETTERS, EventConsumer
from shared.messaging.envelope import Envelope
from shared.store.sqlite import SQLiteStore

NOW = datetime.now(UTC)
YEAR = NOW.year + 1
SENDER = "/hr-portal"


class DeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []

    async def send(self, topic, key, value, headers) -> None:
        self.sent.append((topic, key, value, headers))


@pytest.fixture
async def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "service.db"))
    await s.open()
    yield s
    await s.close()


def consumer_of(name: str, store, handlers: dict) -> tuple[EventConsumer, DeadLetters]:
    dead = DeadLetters()
    return EventConsumer(name, store, handlers, dead, f"ilt.{name}.dead-letter", max_attempts=2,
                         backoff_seconds=0), dead


def request(data: Any, correlation_id: str | None = None) -> Envelope:
    return Envelope(data=data, received_source=SENDER, correlation_id=correlation_id)


class Feed:
    """Records handed to a consumer the way FastStream hands them over (topic, partition, offset)."""

    def __init__(self, consumer: EventConsumer) -> None:
        self.consumer = consumer
        self.offset = 0

    def record(self, topic: str, value: bytes | None, headers: list[tuple[str, bytes]], key: bytes | None = None):
        self.offset += 1
        return SimpleNamespace(topic=topic, partition=0, offset=self.offset, value=value, headers=headers, key=key)

    async def send(self, topic: str, *envelopes: Envelope) -> None:
        await self.consumer.process_batch([self.record(topic, e.value(), e.headers(), e.key.encode())
                                           for e in envelopes])

    async def raw(self, topic: str, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        await self.consumer.process_batch([self.record(topic, value, headers)])


async def outbox(store) -> list[dict[str, Any]]:
    """What the relay will publish: type, key, CloudEvents headers and data."""
    return [{"type": e.event_type, "key": e.key.decode(), "headers": {k: v.decode() for k, v in e.headers},
             "data": json.loads(e.value)} for e in await store.pending_outbox(1000)]


def outcomes(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["type"].endswith(("request-accepted.v1", "request-rejected.v1"))]


# enrollment -----------------------------------------------------------------------------------------------------


def session_plan(capacity: int = 1, starts_in: timedelta = timedelta(days=30)) -> dict[str, Any]:
    start = NOW + starts_in
    return {"course_code": "SWC", "title": "Software Carpentry", "delivery": "classroom", "venue_id": "room-a",
            "time_zone": "Europe/Berlin", "capacity": capacity, "cost_centre": "CC-1",
            "slots": [TimeSlot(starts_at=start, ends_at=start + timedelta(hours=8))]}


@pytest.fixture
def enrollment(store):
    consumer, dead = consumer_of("enrollment", store, {**ENROLLMENT_POLICIES, **enrollment_requests.HANDLERS})
    return SimpleNamespace(feed=Feed(consumer), dead=dead, consumer=consumer)


async def test_enroll_request_enrolls_and_reports_the_outcome_caused_by_the_request(store, enrollment) -> None:
    await enrollment.feed.send(SCHEDULING_EVENTS, Envelope(data=SessionScheduled(
        session_id="s1", occurred_at=NOW, **session_plan(capacity=1))))
    asked = request(EnrollLearnerRequested(session_id="s1", learner_id="learner-1"), correlation_id="hr-chain-7")
    await enrollment.feed.send(ENROLLMENT_REQUESTS, asked)

    sent = await outbox(store)
    assert [e["type"] for e in sent] == ["ilt.enrollment.learner-enrolled.v1", "ilt.enrollment.request-accepted.v1"]
    for entry in sent:  # the sender correlates by the causation id; its correlation id is kept
        assert entry["headers"]["ce_causationid"] == asked.id
        assert entry["headers"]["ce_correlationid"] == "hr-chain-7"
        assert entry["key"] == "s1"
    enrolled, accepted = (e["data"] for e in sent)
    assert accepted["request_id"] == asked.id and accepted["request_source"] == SENDER
    assert accepted["request_type"] == "ilt.enrollment.enroll-learner-requested.v1"
    assert accepted["changed"] is True
    assert accepted["result"] == {"enrollment_id": enrolled["enrollment_id"], "session_id": "s1",
                                  "learner_id": "learner-1", "status": "enrolled"}


async def test_a_request_delivered_twice_has_its_effect_once(store, enrollment) -> None:
    await enrollment.feed.send(SCHEDULING_EVENTS, Envelope(data=SessionScheduled(
        session_id="s1", occurred_at=NOW, **session_plan(capacity=1))))
    asked = request(EnrollLearnerRequested(session_id="s1", learner_id="learner-1"))
    await enrollment.feed.send(ENROLLMENT_REQUESTS, asked)
    await enrollment.feed.send(ENROLLMENT_REQUESTS, asked)  # redelivered in another batch
    await enrollment.feed.send(ENROLLMENT_REQUESTS, asked, asked)  # and twice in one batch
    assert [e["type"] for e in await outbox(store)] == [
        "ilt.enrollment.learner-enrolled.v1", "ilt.enrollment.request-accepted.v1"]
    assert enrollment.consumer.stats.skipped_duplicates == 3


async def test_the_same_learner_again_is_accepted_without_change(store, enrollment) -> None:
    await enrollment.feed.send(SCHEDULING_EVENTS, Envelope(data=SessionScheduled(
        session_id="s1", occurred_at=NOW, **session_plan(capacity=1))))
    first = request(EnrollLearnerRequested(session_id="s1", learner_id="learner-1"))
    again = request(EnrollLearnerRequested(session_id="s1", learner_id="learner-1"))
    await enrollment.feed.send(ENROLLMENT_REQUESTS, first, again)
    last = (await outbox(store))[-1]
    assert last["type"] == "ilt.enrollment.request-accepted.v1" and last["data"]["changed"] is False
    assert last["headers"]["ce_causationid"] == again.id
    assert len([e for e in await outbox(store) if e["type"] == "ilt.enrollment.learner-enrolled.v1"]) == 1


async def test_unknown_session_is_rejected_as_retryable_and_nothing_else_is_written(store, enrollment) -> None:
    asked = request(EnrollLearnerRequested(session_id="nowhere", learner_id="learner-1"))
    await enrollment.feed.send(ENROLLMENT_REQUESTS, asked)
    sent = await outbox(store)
    assert [e["type"] for e in sent] == ["ilt.enrollment.request-rejected.v1"]
    rejected = sent[0]["data"]
    assert rejected["error"] == "unknown_session" and rejected["retryable"] is True
    assert rejected["details"] == {"session_id": "nowhere"}
    assert rejected["request_id"] == asked.id and sent[0]["key"] == "nowhere"
    assert await store.scan("rosters") == [] and await store.event_count() == 1


async def test_a_refused_request_writes_nothing_but_its_rejection_even_inside_a_batch(store, enrollment) -> None:
    await enrollment.feed.send(SCHEDULING_EVENTS, Envelope(data=SessionScheduled(
        session_id="s1", occurred_at=NOW, **session_plan(capacity=1))))
    await enrollment.feed.send(SCHEDULING_EVENTS, Envelope(data=SessionScheduled(
        session_id="s2", occurred_at=NOW, **session_plan(capacity=1))))
    await enrollment.feed.send(SCHEDULING_EVENTS, Envelope(data=SessionCancelled(session_id="s2", occurred_at=NOW)))
    roster_before = await store.get("rosters", "s2")
    ok = request(EnrollLearnerRequested(session_id="s1", learner_id="learner-1"))
    refused = request(EnrollLearnerRequested(session_id="s2", learner_id="learner-2"))
    also_ok = request(EnrollLearnerRequested(session_id="s1", learner_id="learner-3"))
    await enrollment.feed.send(ENROLLMENT_REQUESTS, ok, refused, also_ok)

    by_request = {e["data"]["request_id"]: e for e in outcomes(await outbox(store))}
    assert by_request[refused.id]["type"] == "ilt.enrollment.request-rejected.v1"
    assert by_request[refused.id]["data"]["error"] == "session_cancelled"
    assert by_request[refused.id]["data"]["retryable"] is False
    assert by_request[ok.id]["data"]["result"]["status"] == "enrolled"
    assert by_request[also_ok.id]["data"]["result"]["status"] == "waitlisted"
    assert await store.get("rosters", "s2") == roster_before
    assert not [e for e in await outbox(store) if e["key"] == "s2" and e["type"].startswith("ilt.enrollment.learner")]


async def test_cancel_request_promotes_the_first_waiting_learner(store, enrollment) -> None:
    await enrollment.feed.send(SCHEDULING_EVENTS, Envelope(data=SessionScheduled(
        session_id="s1", occurred_at=NOW, **session_plan(capacity=1))))
    await enrollment.feed.send(ENROLLMENT_REQUESTS, request(EnrollLearnerRequested(session_id="s1", learner_id="a")),
                               request(EnrollLearnerRequested(session_id="s1", learner_id="b")))
    first = next(e for e in await outbox(store) if e["type"] == "ilt.enrollment.learner-enrolled.v1")
    cancel = request(CancelEnrollmentRequested(enrollment_id=first["data"]["enrollment_id"]))
    await enrollment.feed.send(ENROLLMENT_REQUESTS, cancel)
    caused = [e for e in await outbox(store) if e["headers"].get("ce_causationid") == cancel.id]
    assert [e["type"] for e in caused] == ["ilt.enrollment.enrollment-cancelled.v1",
                                           "ilt.enrollment.request-accepted.v1"]
    assert caused[1]["data"]["result"]["promoted_enrollment_ids"] and caused[1]["key"] == "s1"
    unknown = request(CancelEnrollmentRequested(enrollment_id="no-such-enrollment"))
    await enrollment.feed.send(ENROLLMENT_REQUESTS, unknown)
    last = (await outbox(store))[-1]
    assert (last["data"]["error"], last["key"]) == ("unknown_enrollment", "no-such-enrollment")


async def test_structured_mode_request_is_taken_like_a_binary_one(store, enrollment) -> None:
    await enrollment.feed.send(SCHEDULING_EVENTS, Envelope(data=SessionScheduled(
        session_id="s1", occurred_at=NOW, **session_plan(capacity=1))))
    event = {"specversion": "1.0", "id": "req-structured-1", "source": "/lms", "time": NOW.isoformat(),
             "type": "ilt.enrollment.enroll-learner-requested.v1", "subject": "s1",
             "datacontenttype": "application/json", "correlationid": "lms-42",
             "data": {"session_id": "s1", "learner_id": "learner-9"}}
    await enrollment.feed.raw(ENROLLMENT_REQUESTS, json.dumps(event).encode(),
                              [("content-type", b"application/cloudevents+json; charset=UTF-8")])
    sent = await outbox(store)
    assert [e["type"] for e in sent] == ["ilt.enrollment.learner-enrolled.v1", "ilt.enrollment.request-accepted.v1"]
    assert {e["headers"]["ce_causationid"] for e in sent} == {"req-structured-1"}
    assert {e["headers"]["ce_correlationid"] for e in sent} == {"lms-42"}
    assert sent[1]["data"]["request_source"] == "/lms"


@pytest.mark.parametrize(("data", "reason"), [
    ({"session_id": "s1"}, "invalid_payload"),  # learner_id missing
    ({"session_id": "s1", "learner_id": "l1", "learner_email": "x@example.org"}, "invalid_payload"),  # unknown field
    ({"session_id": "s1", "learner_id": "jane doe"}, "invalid_payload"),  # not an opaque id
])
async def test_malformed_request_goes_to_the_dead_letter_topic_and_changes_nothing(store, enrollment, data,
                                                                                   reason) -> None:
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"bad-1"), ("ce_source", b"/hr-portal"),
               ("ce_type", b"ilt.enrollment.enroll-learner-requested.v1"), ("content-type", b"application/json")]
    await enrollment.feed.raw(ENROLLMENT_REQUESTS, json.dumps(data).encode(), headers)
    topic, _, _, dl_headers = enrollment.dead.sent[0]
    assert topic == "ilt.enrollment.dead-letter" and dict(dl_headers)["dlq_reason"] == reason.encode()
    assert b"x@example.org" not in dict(dl_headers)["dlq_error"]
    assert await outbox(store) == []
    assert [doc["event_id"] for _, doc in await store.scan(DEAD_LETTERS)] == ["bad-1"]


# scheduling -----------------------------------------------------------------------------------------------------


def schedule_request(session_id: str, venue: str = "room-a", day: int = 1, **kw: Any) -> ScheduleSessionRequested:
    return ScheduleSessionRequested(
        session_id=session_id, course_code="SWC", title="Software Carpentry", delivery="classroom", venue_id=venue,
        time_zone="Europe/Berlin", capacity=20, cost_centre="CC-1", instructor_ids=["ins-1"],
        slots=[{"starts_at": f"{YEAR}-04-0{day}T09:00", "ends_at": f"{YEAR}-04-0{day}T17:00"}], **kw)


async def test_schedule_request_books_and_a_conflicting_one_is_rejected_naming_the_conflict(store) -> None:
    consumer, _ = consumer_of("scheduling", store, dict(scheduling_requests.HANDLERS))
    feed = Feed(consumer)
    first = request(schedule_request("s-1"))
    clash = request(schedule_request("s-2", venue="room-b"))  # same instructor, same day
    await feed.send(SCHEDULING_REQUESTS, first, clash)
    sent = await outbox(store)
    assert [e["type"] for e in sent] == ["ilt.scheduling.session-scheduled.v1", "ilt.scheduling.request-accepted.v1",
                                         "ilt.scheduling.request-rejected.v1"]
    assert sent[0]["data"]["slots"][0]["starts_at"] == f"{YEAR}-04-01T09:00:00+02:00"  # local time in its zone
    rejected = sent[2]["data"]
    assert rejected["error"] == "booking_conflict" and rejected["request_id"] == clash.id
    assert rejected["details"]["conflicts"][0]["resource_id"] == "ins-1"
    assert rejected["details"]["conflicts"][0]["conflicting_session_id"] == "s-1"
    assert await store.get("sessions", "s-2") is None  # the refused command stored nothing


# finance --------------------------------------------------------------------------------------------------------


async def test_erp_allocation_and_invoice_requests_and_a_refused_invoice(store) -> None:
    consumer, _ = consumer_of("finance", store, {**FINANCE_POLICIES, **finance_requests.HANDLERS})
    feed = Feed(consumer)
    allocate = request(AllocateBudgetRequested(allocation_id="erp-budget-CC-9-2030", cost_centre="CC-9",
                                               period="2030", amount={"amount": "10000.00", "currency": "EUR"}))
    invoice = request(RecordCostRequested(invoice_ref="INV-1", cost_centre="CC-9", period="2030",
                                          category="venue_hire", amount={"amount": "1250.00", "currency": "EUR"}))
    wrong_year = request(RecordCostRequested(invoice_ref="INV-2", cost_centre="CC-9", period="2031",
                                             category="venue_hire", amount={"amount": "99.00", "currency": "EUR"}))
    await feed.send(FINANCE_REQUESTS, allocate, invoice, wrong_year)
    sent = await outbox(store)
    assert [e["type"] for e in sent] == [
        "ilt.finance.budget-allocated.v1", "ilt.finance.request-accepted.v1",
        "ilt.finance.cost-incurred.v1", "ilt.finance.request-accepted.v1",
        "ilt.finance.request-rejected.v1"]
    assert {e["key"] for e in sent} == {"CC-9"}
    assert sent[2]["data"]["amount"] == {"amount": "1250.00", "currency": "EUR"}
    assert sent[2]["headers"]["ce_causationid"] == invoice.id
    refused = sent[4]["data"]
    assert refused["error"] == "unknown_cost_centre_period" and refused["details"]["detail"][0]["field"] == "period"
    assert await store.get("invoices", "INV-2") is None
