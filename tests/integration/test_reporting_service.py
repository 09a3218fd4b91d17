"""Reporting as a process against the real broker: events of all three producers in, figures out over HTTP.

The broker lives for the whole test session, so its topics may already hold other tests' events (reporting
consumes from the earliest offset). The test therefore uses its own ids and a far-away year, waits until the
service has caught up with everything already on the topics before it publishes, and then waits until the
consumer group's committed offsets pass the end of what it published (the offsets are committed after the
events' effects are stored), with a deadline. No fixed sleeps.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from devstack.stack import Stack
from shared.contracts.base import Money
from shared.contracts.enrollment import AttendanceRecorded, EnrollmentCancelled, LearnerEnrolled, LearnerWaitlisted
from shared.contracts.finance import BudgetAllocated, CostIncurred, CostPolicySet, PerLearnerRate
from shared.contracts.scheduling import SessionCancelled, SessionRescheduled, SessionScheduled
from shared.contracts.topics import ENROLLMENT_EVENTS, EVENT_TOPICS
from shared.messaging.envelope import Envelope
from shared.messaging.kafka import Producer

pytestmark = pytest.mark.integration

DEAD_LETTER_TOPIC = "ilt.reporting.dead-letter"
NOW = datetime.now(UTC)
TIMEOUT = 60.0


# ----- the story ---------------------------------------------------------------------------------------------------

class Story:
    """Four sessions, their enrollments and a cost centre's money, all with ids of this test run only."""

    def __init__(self) -> None:
        run = uuid.uuid4().hex[:8]
        self.year = random.Random(run).randint(3000, 8999)  # no other test schedules sessions there
        self.s1, self.s2, self.s3, self.s4 = (f"rep-{run}-s{n}" for n in range(1, 5))
        self.v1, self.v2, self.r1 = f"rep-{run}-v1", f"rep-{run}-v2", f"rep-{run}-r1"
        self.c1, self.c2 = f"rep-{run}-c1", f"rep-{run}-c2"
        self.cc = f"rep-{run}-cc"
        self.malformed_id = f"rep-{run}-malformed"

    def plan(self, course: str, venue: str | None, room: str | None, start: str, end: str, capacity: int,
             zone: str = "Europe/Berlin") -> dict:
        return {
            "course_code": course, "title": f"Course {course}", "delivery": "virtual" if room else "classroom",
            "venue_id": venue, "virtual_room_id": room, "time_zone": zone, "capacity": capacity,
            "cost_centre": self.cc, "slots": [{"starts_at": start, "ends_at": end}],
        }

    def scheduling(self) -> list[Envelope]:
        y = self.year
        return [Envelope(data=e) for e in [
            SessionScheduled(occurred_at=NOW, session_id=self.s1, **self.plan(
                self.c1, self.v1, None, f"{y}-03-10T09:00:00+01:00", f"{y}-03-10T17:00:00+01:00", 2)),
            # 02:00 UTC on 1 August is still 31 July in New York: the session belongs to July
            SessionScheduled(occurred_at=NOW, session_id=self.s2, **self.plan(
                self.c2, None, self.r1, f"{y}-08-01T02:00:00+00:00", f"{y}-08-01T04:00:00+00:00", 3,
                zone="America/New_York")),
            SessionScheduled(occurred_at=NOW, session_id=self.s3, **self.plan(
                self.c1, self.v1, None, f"{y}-05-10T09:00:00+02:00", f"{y}-05-10T17:00:00+02:00", 5)),
            SessionScheduled(occurred_at=NOW, session_id=self.s4, **self.plan(
                self.c2, self.v2, None, f"{y}-04-10T09:00:00+02:00", f"{y}-04-10T17:00:00+02:00", 4)),
            SessionCancelled(occurred_at=NOW, session_id=self.s3, reason="venue closed"),
            SessionRescheduled(occurred_at=NOW, session_id=self.s4, **self.plan(
                self.c2, self.v2, None, f"{y}-09-10T09:00:00+02:00", f"{y}-09-10T17:00:00+02:00", 6)),
        ]]

    def who(self, session_id: str, n: int) -> dict:
        return {"occurred_at": NOW, "enrollment_id": f"{session_id}-e{n}", "session_id": session_id,
                "learner_id": f"{session_id}-l{n}"}

    def enrollment_before_malformed(self) -> list[Envelope]:
        s1, s2, s3, s4 = self.s1, self.s2, self.s3, self.s4
        return [Envelope(data=e) for e in [
            LearnerEnrolled(**self.who(s1, 1)),
            LearnerEnrolled(**self.who(s1, 2)),
            LearnerWaitlisted(**self.who(s1, 3), position=1),
            LearnerEnrolled(**self.who(s2, 1)),
            LearnerEnrolled(**self.who(s3, 1)),
            LearnerEnrolled(**self.who(s3, 2)),
            EnrollmentCancelled(**self.who(s3, 1), previous_status="enrolled", reason="session_cancelled"),
            EnrollmentCancelled(**self.who(s3, 2), previous_status="enrolled", reason="session_cancelled"),
            *(LearnerEnrolled(**self.who(s4, n)) for n in range(1, 4)),
        ]]

    def enrollment_after_malformed(self) -> list[Envelope]:
        s1, s4 = self.s1, self.s4
        return [Envelope(data=e) for e in [
            EnrollmentCancelled(**self.who(s1, 1), previous_status="enrolled"),
            LearnerEnrolled(**self.who(s1, 3), promoted_from_waitlist=True),
            AttendanceRecorded(**self.who(s1, 2), status="no_show"),
            AttendanceRecorded(**self.who(s1, 2), status="attended", previous_status="no_show"),
            AttendanceRecorded(**self.who(s1, 3), status="partial"),
            AttendanceRecorded(**self.who(s4, 1), status="no_show"),
        ]]

    def finance(self) -> list[Envelope]:
        def eur(amount: str) -> Money:
            return Money(amount=Decimal(amount), currency="EUR")

        def cost(cost_id: str, kind: str, amount: str, reverses: str | None = None) -> CostIncurred:
            return CostIncurred(occurred_at=NOW, cost_id=f"{self.cc}-{cost_id}", cost_centre=self.cc,
                                period=str(self.year), kind=kind, category="venue_hire", amount=eur(amount),
                                reason="invoice" if kind == "actual" else "planned_cost", session_id=self.s1,
                                reverses=f"{self.cc}-{reverses}" if reverses else None)

        return [Envelope(data=e) for e in [
            BudgetAllocated(occurred_at=NOW, allocation_id=f"{self.cc}-a1", cost_centre=self.cc,
                            period=str(self.year), amount=eur("1000.00")),
            BudgetAllocated(occurred_at=NOW, allocation_id=f"{self.cc}-a2", cost_centre=self.cc,
                            period=str(self.year), amount=eur("500.50")),
            cost("k1", "committed", "300.00"),
            cost("k2", "committed", "120.00"),
            cost("k3", "committed", "-300.00", reverses="k1"),
            cost("k4", "actual", "450.75"),
            CostPolicySet(occurred_at=NOW, cost_centre=self.cc,
                          rates=[PerLearnerRate(category="catering", amount=eur("12.00"), per="day")]),
        ]]

    def malformed(self) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """A learner-enrolled record of session 1 whose payload is not valid JSON."""
        template = Envelope(data=LearnerEnrolled(**self.who(self.s1, 99)))
        headers = [(k, v) for k, v in template.headers() if k != "ce_id"] + [("ce_id", self.malformed_id.encode())]
        return self.s1.encode(), b'{"enrollment_id": "broken", "session_id": ', headers


# ----- Kafka helpers -----------------------------------------------------------------------------------------------

def record(envelope: Envelope) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    """As the outbox relay sends it."""
    return envelope.topic, envelope.key.encode(), envelope.value(), envelope.headers()


async def publish(servers: str, story: Story) -> int:
    """Enrollment first (it reaches reporting before the sessions are known), then scheduling, then finance."""
    producer = Producer(servers)
    try:
        key, value, headers = story.malformed()
        before, after = story.enrollment_before_malformed(), story.enrollment_after_malformed()
        await producer.send_many([record(e) for e in before])
        await producer.send(ENROLLMENT_EVENTS, key, value, headers)
        await producer.send_many([record(e) for e in after])
        await producer.send_many([record(e) for e in story.scheduling()])
        await producer.send_many([record(e) for e in story.finance()])
    finally:
        await producer.stop()
    return len(before) + 1 + len(after) + len(story.scheduling()) + len(story.finance())


async def end_offsets(servers: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=servers)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(t, p) for t in EVENT_TOPICS for p in consumer.partitions_for_topic(t) or ()]
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def committed_offsets(servers: str, partitions: list[TopicPartition],
                            group: str = "reporting") -> dict[TopicPartition, int]:
    """What the group committed (this client only asks; it never joins the group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {tp: await consumer.committed(tp) or 0 for tp in partitions}
    finally:
        await consumer.stop()


def wait_until_consumed(servers: str, targets: dict[TopicPartition, int], deadline: float) -> None:
    """Until reporting's consumer group has committed at least ``targets`` (committed = next offset to read)."""
    while True:
        committed = asyncio.run(committed_offsets(servers, [tp for tp, end in targets.items() if end > 0]))
        behind = {tp: end for tp, end in targets.items() if end > 0 and committed[tp] < end}
        if not behind:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"reporting did not consume up to {behind}; committed {committed}")
        time.sleep(0.1)


def find_dead_letter(servers: str, event_id: str, deadline: float) -> dict[str, bytes]:
    async def scan() -> dict[str, bytes]:
        consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer.topics()
            partitions = [TopicPartition(DEAD_LETTER_TOPIC, p)
                          for p in consumer.partitions_for_topic(DEAD_LETTER_TOPIC) or ()]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            while time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for rec in records:
                        headers = {k: v for k, v in rec.headers}
                        if headers.get("ce_id") == event_id.encode():
                            return headers
            raise TimeoutError(f"no dead letter with ce_id {event_id}")
        finally:
            await consumer.stop()

    return asyncio.run(scan())


# ----- the test ----------------------------------------------------------------------------------------------------

def test_reporting_projects_events_of_all_producers(kafka, tmp_path) -> None:
    servers = kafka.bootstrap_servers
    story = Story()
    with Stack(tmp_path, services=["reporting"], bootstrap_servers=servers) as stack:
        url = stack.url("reporting")
        deadline = time.monotonic() + TIMEOUT
        # whatever earlier tests left on the topics is consumed first, so the counts below are ours alone
        wait_until_consumed(servers, asyncio.run(end_offsets(servers)), deadline)
        with httpx.Client(base_url=url, timeout=10, headers=stack.headers("reader")) as http:
            before = http.get("/status").json()
            published = asyncio.run(publish(servers, story))
            wait_until_consumed(servers, asyncio.run(end_offsets(servers)), deadline)
            after = http.get("/status").json()
            assert after["processed_events"] - before["processed_events"] == published  # malformed one included
            assert after["dead_lettered"] - before["dead_lettered"] == 1

            dead = find_dead_letter(servers, story.malformed_id, deadline)
            assert dead["dlq_reason"] == b"invalid_payload"
            assert dead["dlq_original_topic"] == ENROLLMENT_EVENTS.encode()

            year = {"year": story.year}
            assert http.get("/occupancy/totals", params=year).json() == {
                "sessions": 3, "virtual_sessions": 1, "cancelled_sessions": 1, "capacity": 11, "enrolled": 6,
                "waitlisted": 0, "attended": 2, "no_show": 1, "fill_rate": 0.5455, "awaiting_schedule": 0,
            }

            s1 = http.get(f"/occupancy/sessions/{story.s1}").json()  # events after the malformed one applied
            assert {k: s1[k] for k in ("status", "capacity", "enrolled", "waitlisted", "attended", "no_show",
                                       "fill_rate", "venue", "month", "year")} == {
                "status": "scheduled", "capacity": 2, "enrolled": 2, "waitlisted": 0, "attended": 2,
                "no_show": 0, "fill_rate": 1.0, "venue": story.v1, "month": f"{story.year}-03", "year": story.year,
            }
            s3 = http.get(f"/occupancy/sessions/{story.s3}").json()
            assert (s3["status"], s3["enrolled"]) == ("cancelled", 0)
            missing = http.get(f"/occupancy/sessions/{story.s1}-nope")
            assert missing.status_code == 404 and missing.json()["error"] == "unknown_session"

            listed = http.get("/occupancy/sessions", params={**year, "course_code": story.c2}).json()
            assert [s["session_id"] for s in listed["sessions"]] == [story.s2, story.s4]

            by_venue = {r["venue"]: r for r in http.get("/occupancy/by-venue", params=year).json()["by_venue"]}
            assert list(by_venue) == [story.r1, story.v1, story.v2]
            assert (by_venue[story.v1]["sessions"], by_venue[story.v1]["cancelled_sessions"],
                    by_venue[story.v1]["fill_rate"]) == (1, 1, 1.0)
            assert (by_venue[story.r1]["virtual_sessions"], by_venue[story.r1]["fill_rate"]) == (1, 0.3333)
            assert (by_venue[story.v2]["capacity"], by_venue[story.v2]["fill_rate"]) == (6, 0.5)

            by_course = {r["course_code"]: r for r in http.get("/occupancy/by-course", params=year).json()["by_course"]}
            assert (by_course[story.c2]["sessions"], by_course[story.c2]["capacity"],
                    by_course[story.c2]["enrolled"], by_course[story.c2]["fill_rate"]) == (2, 9, 4, 0.4444)

            by_month = http.get("/occupancy/by-month", params=year).json()["by_month"]
            y = story.year
            assert [(r["month"], r["sessions"], r["cancelled_sessions"]) for r in by_month] == [
                (f"{y}-03", 1, 0), (f"{y}-05", 0, 1), (f"{y}-07", 1, 0), (f"{y}-09", 1, 0)]  # s4 left April

            by_year = http.get("/occupancy/by-year", params=year).json()["by_year"]
            assert [(r["year"], r["enrolled"], r["fill_rate"]) for r in by_year] == [(y, 6, 0.5455)]

            budgets = http.get(f"/budgets/{story.cc}").json()
            assert budgets == {"cost_centre": story.cc, "budgets": [{
                "cost_centre": story.cc, "period": str(y), "currency": "EUR", "allocated": "1500.50",
                "committed": "120.00", "actual": "450.75", "remaining": "1049.75"}]}
            assert story.cc in [b["cost_centre"] for b in http.get("/budgets", params={"period": str(y)}).json()["budgets"]]
