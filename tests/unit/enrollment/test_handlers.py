"""Enrollment's command handlers and its policies on scheduling's events, against a real SQLite store."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.enrollment.adapters.arrivals import SessionArrivals
from services.enrollment.adapters.rosters import ROSTERS
from services.enrollment.adapters.sessions import SESSIONS
from services.enrollment.application import handlers
from services.enrollment.application.commands import (
    MAX_BATCH,
    CancelEnrollment,
    EnrollLearner,
    EnrollLearners,
    RecordAttendance,
    RecordAttendances,
)
from services.enrollment.application.policies import HANDLERS
from shared.commands import Trace
from shared.contracts.enrollment import EnrollmentCancelled, LearnerEnrolled, LearnerWaitlisted
from shared.contracts.scheduling import SessionCancelled, SessionRescheduled, SessionScheduled, TimeSlot
from shared.errors import Conflict, Invalid, NotFound
from shared.messaging.envelope import Envelope
from shared.store.sqlite import SQLiteStore

NOW = datetime.now(UTC)


@pytest.fixture
async def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "enrollment.db"))
    await s.open()
    yield s
    await s.close()


def plan(capacity: int = 2, starts_in: timedelta = timedelta(days=10), hours: int = 8) -> dict:
    start = NOW + starts_in
    return {"course_code": "SWC", "title": "Software Carpentry", "delivery": "classroom", "venue_id": "room-a",
            "time_zone": "Europe/Berlin", "capacity": capacity, "cost_centre": "CC-1",
            "slots": [TimeSlot(starts_at=start, ends_at=start + timedelta(hours=hours))]}


def scheduled(session_id: str = "s1", **kw) -> Envelope:
    return Envelope(data=SessionScheduled(session_id=session_id, occurred_at=NOW, **plan(**kw)))


async def consume(store, envelope: Envelope, arrivals: SessionArrivals | None = None) -> None:
    """What the consumer does: claim the event, run the policy, commit; then wake waiting requests."""
    async with store.transaction() as uow:
        assert await uow.claim("enrollment", envelope.id)
        await HANDLERS[type(envelope.data)](uow, envelope)
    if arrivals is not None:
        arrivals.notify(envelope)


async def enroll(store, learner: str, session_id: str = "s1", trace: Trace | None = None, **kw):
    return await handlers.enroll_learner(store, session_id, EnrollLearner(learner_id=learner, **kw),
                                         trace or Trace())


async def stream(store, session_id: str = "s1") -> list[Envelope]:
    return [r.envelope for r in await store.read_stream(f"roster-{session_id}")]


async def test_enroll_appends_event_to_the_session_roster_stream_and_outbox(store) -> None:
    await consume(store, scheduled())
    view, created = await enroll(store, "learner-1")
    assert created and view["status"] == "enrolled" and view["session_id"] == "s1"
    events = await stream(store)
    assert [type(e.data) for e in events] == [LearnerEnrolled]
    assert events[0].data.enrollment_id == view["enrollment_id"] and events[0].data.learner_id == "learner-1"
    assert await store.outbox_backlog() == 1
    roster = await store.get(ROSTERS, "s1")
    assert roster["enrolled_count"] == 1 and roster["free_seats"] == 1 and roster["capacity"] == 2


async def test_enroll_again_is_idempotent_and_capacity_puts_the_rest_on_the_waitlist(store) -> None:
    await consume(store, scheduled(capacity=2))
    first, _ = await enroll(store, "l1")
    await enroll(store, "l2")
    third, created3 = await enroll(store, "l3")
    fourth, _ = await enroll(store, "l4")
    assert created3 and third["status"] == "waitlisted" and third["position"] == 1 and fourth["position"] == 2
    again, created = await enroll(store, "l1")
    assert not created and again == first
    waiting_again, created = await enroll(store, "l4")
    assert not created and waiting_again["enrollment_id"] == fourth["enrollment_id"]
    assert len(await stream(store)) == 4


async def test_cancel_enrolled_promotes_first_waiting_in_same_transaction_caused_by_the_cancellation(store) -> None:
    await consume(store, scheduled(capacity=1))
    first, _ = await enroll(store, "l1")
    second, _ = await enroll(store, "l2")
    third, _ = await enroll(store, "l3")
    out = await handlers.cancel_enrollment(store, first["enrollment_id"], CancelEnrollment(),
                                           Trace(correlation_id="corr-1"))
    assert out["status"] == "cancelled" and out["promoted_enrollment_ids"] == [second["enrollment_id"]]
    events = await stream(store)
    cancel, promotion = events[-2:]
    assert isinstance(cancel.data, EnrollmentCancelled) and cancel.data.previous_status == "enrolled"
    assert isinstance(promotion.data, LearnerEnrolled) and promotion.data.promoted_from_waitlist
    assert promotion.data.enrollment_id == second["enrollment_id"]
    assert promotion.causation_id == cancel.id and promotion.correlation_id == cancel.correlation_id == "corr-1"
    roster = await store.get(ROSTERS, "s1")
    assert [e["learner_id"] for e in roster["enrolled"]] == ["l2"]
    assert [(e["learner_id"], e["position"]) for e in roster["waitlist"]] == [("l3", 1)]

    # cancelling again: 200-style answer, no event, nobody else promoted
    again = await handlers.cancel_enrollment(store, first["enrollment_id"], CancelEnrollment(), Trace())
    assert again["status"] == "cancelled" and again["promoted_enrollment_ids"] == []
    assert len(await stream(store)) == len(events)
    assert (await store.get(ROSTERS, "s1"))["waitlisted_count"] == 1

    # the waiting learner cancels: no promotion
    out = await handlers.cancel_enrollment(store, third["enrollment_id"], CancelEnrollment(), Trace())
    assert out["promoted_enrollment_ids"] == []
    assert (await stream(store))[-1].data.previous_status == "waitlisted"


async def test_cancel_unknown_enrollment_is_404(store) -> None:
    with pytest.raises(NotFound) as exc:
        await handlers.cancel_enrollment(store, "nope", CancelEnrollment(), Trace())
    assert exc.value.code == "unknown_enrollment"


async def test_session_cancellation_cancels_every_enrollment_caused_by_scheduling_event(store) -> None:
    await consume(store, scheduled(capacity=1))
    for learner in ("l1", "l2", "l3"):
        await enroll(store, learner)
    cancelled = Envelope(data=SessionCancelled(session_id="s1", occurred_at=NOW, reason="instructor ill"))
    await consume(store, cancelled)
    new = (await stream(store))[3:]
    assert [(e.data.learner_id, e.data.previous_status, e.data.reason) for e in new] == [
        ("l1", "enrolled", "session_cancelled"), ("l2", "waitlisted", "session_cancelled"),
        ("l3", "waitlisted", "session_cancelled")]
    assert all(e.causation_id == cancelled.id and e.correlation_id == cancelled.correlation_id for e in new)
    assert (await store.get(SESSIONS, "s1"))["status"] == "cancelled"
    roster = await store.get(ROSTERS, "s1")
    assert roster["session_status"] == "cancelled" and roster["enrolled_count"] == 0 and roster["waitlist"] == []
    with pytest.raises(Conflict) as exc:
        await enroll(store, "l4")
    assert exc.value.code == "session_cancelled"
    # a plan arriving after the cancellation does not reopen the session
    await consume(store, Envelope(data=SessionRescheduled(session_id="s1", occurred_at=NOW, **plan(capacity=9))))
    assert (await store.get(SESSIONS, "s1"))["status"] == "cancelled"
    assert len(await stream(store)) == 6


async def test_capacity_growth_promotes_waiting_learners_caused_by_the_reschedule(store) -> None:
    await consume(store, scheduled(capacity=1))
    for learner in ("l1", "l2", "l3", "l4"):
        await enroll(store, learner)
    rescheduled = Envelope(data=SessionRescheduled(session_id="s1", occurred_at=NOW, **plan(capacity=3)))
    await consume(store, rescheduled)
    promotions = (await stream(store))[4:]
    assert [(e.data.learner_id, e.data.promoted_from_waitlist) for e in promotions] == [("l2", True), ("l3", True)]
    assert all(e.causation_id == rescheduled.id for e in promotions)
    roster = await store.get(ROSTERS, "s1")
    assert roster["capacity"] == 3 and roster["enrolled_count"] == 3
    assert [(e["learner_id"], e["position"]) for e in roster["waitlist"]] == [("l4", 1)]


async def test_capacity_reduction_bumps_nobody_and_new_learners_wait(store) -> None:
    await consume(store, scheduled(capacity=3))
    for learner in ("l1", "l2", "l3"):
        await enroll(store, learner)
    await consume(store, Envelope(data=SessionRescheduled(session_id="s1", occurred_at=NOW, **plan(capacity=1))))
    assert len(await stream(store)) == 3
    view, _ = await enroll(store, "l4")
    assert view["status"] == "waitlisted" and view["position"] == 1
    roster = await store.get(ROSTERS, "s1")
    assert roster["enrolled_count"] == 3 and roster["free_seats"] == 0


async def test_unknown_session_waits_then_404_retryable(store) -> None:
    arrivals = SessionArrivals()
    started = time.monotonic()
    with pytest.raises(NotFound) as exc:
        await handlers.enroll_learner(store, "ghost", EnrollLearner(learner_id="l1"), Trace(),
                                      arrivals=arrivals, wait_seconds=0.3)
    assert time.monotonic() - started >= 0.3
    assert exc.value.code == "unknown_session" and exc.value.retry_after == 2
    assert exc.value.body()["retryable"] is True
    assert arrivals.waiting == 0 and await store.event_count() == 0


async def test_enroll_waiting_for_session_is_woken_when_scheduling_event_applied(store) -> None:
    arrivals = SessionArrivals()
    task = asyncio.create_task(handlers.enroll_learner(store, "s-late", EnrollLearner(learner_id="l1"), Trace(),
                                                       arrivals=arrivals, wait_seconds=10))
    await asyncio.sleep(0)  # let the request start waiting
    assert not task.done() and arrivals.waiting == 1
    await consume(store, Envelope(data=SessionCancelled(session_id="other", occurred_at=NOW)), arrivals)
    assert not task.done()
    started = time.monotonic()
    await consume(store, scheduled("s-late"), arrivals)
    view, created = await asyncio.wait_for(task, 2)
    assert time.monotonic() - started < 1  # woken, not timed out
    assert created and view["status"] == "enrolled" and view["session_id"] == "s-late"


async def test_batch_enroll_one_transaction_same_rules_per_learner_results(store) -> None:
    await consume(store, scheduled(capacity=2))
    existing, _ = await enroll(store, "l0")
    cmd = EnrollLearners(learners=["l0", "l1", "l2", "l3", "l2"])
    out = await handlers.enroll_learners(store, "s1", cmd, Trace(correlation_id="import-7"))
    results = [(r["learner_id"], r["status"], r.get("position"), r["created"]) for r in out["results"]]
    assert results == [("l0", "enrolled", None, False), ("l1", "enrolled", None, True),
                       ("l2", "waitlisted", 1, True), ("l3", "waitlisted", 2, True), ("l2", "waitlisted", 1, False)]
    assert out["results"][0]["enrollment_id"] == existing["enrollment_id"]
    assert out["results"][2]["enrollment_id"] == out["results"][4]["enrollment_id"]
    assert (out["created"], out["enrolled"], out["waitlisted"], out["unchanged"]) == (3, 1, 2, 2)
    events = (await stream(store))[1:]
    assert [type(e.data) for e in events] == [LearnerEnrolled, LearnerWaitlisted, LearnerWaitlisted]
    assert {e.correlation_id for e in events} == {"import-7"}
    # every enrollment of the batch can be found by id
    cancelled = await handlers.cancel_enrollment(store, out["results"][1]["enrollment_id"], CancelEnrollment(),
                                                 Trace())
    assert cancelled["promoted_enrollment_ids"] == [out["results"][2]["enrollment_id"]]


async def test_batch_of_a_cancelled_session_is_refused_and_writes_nothing(store) -> None:
    await consume(store, scheduled())
    await consume(store, Envelope(data=SessionCancelled(session_id="s1", occurred_at=NOW)))
    with pytest.raises(Conflict) as exc:
        await handlers.enroll_learners(store, "s1", EnrollLearners(learners=["a", "b"]), Trace())
    assert exc.value.code == "session_cancelled"
    assert await stream(store) == []


def test_batch_is_limited_and_learner_ids_are_checked() -> None:
    with pytest.raises(ValidationError):
        EnrollLearners(learners=[f"l{n}" for n in range(MAX_BATCH + 1)])
    with pytest.raises(ValidationError):
        EnrollLearners(learners=[])
    with pytest.raises(ValidationError):
        EnrollLearner(learner_id=" spaces not allowed")


async def test_finished_session_refused_unless_backdated_to_before_its_end(store) -> None:
    await consume(store, scheduled(starts_in=-timedelta(days=3)))  # ran three days ago, eight hours
    with pytest.raises(Conflict) as exc:
        await enroll(store, "l1")
    assert exc.value.code == "session_finished"
    before = NOW - timedelta(days=4)
    view, created = await enroll(store, "l1", as_of=before, backdated=True)
    assert created and view["status"] == "enrolled"
    event = (await stream(store))[0].data
    assert event.backdated is True and event.occurred_at == before
    with pytest.raises(Invalid):  # a past as_of without backdated=true
        await enroll(store, "l2", as_of=before)
    assert len(await stream(store)) == 1


async def test_attendance_recorded_corrected_and_refused(store) -> None:
    await consume(store, scheduled(capacity=1, starts_in=-timedelta(hours=1)))  # running now
    ann, _ = await enroll(store, "ann")
    bob, _ = await enroll(store, "bob")
    with pytest.raises(Conflict) as exc:
        await handlers.record_attendance(store, bob["enrollment_id"], RecordAttendance(status="attended"), Trace())
    assert exc.value.code == "not_enrolled"
    view = await handlers.record_attendance(store, ann["enrollment_id"], RecordAttendance(status="attended"),
                                            Trace())
    assert view["attendance"] == "attended"
    await handlers.record_attendance(store, ann["enrollment_id"], RecordAttendance(status="attended"), Trace())
    await handlers.record_attendance(store, ann["enrollment_id"], RecordAttendance(status="no_show"), Trace())
    recorded = [e.data for e in await stream(store) if e.type.endswith("attendance-recorded.v1")]
    assert [(r.status, r.previous_status) for r in recorded] == [("attended", None), ("no_show", "attended")]
    roster = await store.get(ROSTERS, "s1")
    assert roster["enrolled"][0]["attendance"] == "no_show"

    await consume(store, scheduled("s-future"))
    future, _ = await enroll(store, "ann", session_id="s-future")
    with pytest.raises(Conflict) as exc:
        await handlers.record_attendance(store, future["enrollment_id"], RecordAttendance(status="attended"),
                                         Trace())
    assert exc.value.code == "session_not_started"
    assert len(await stream(store, "s-future")) == 1


# attendance batch ---------------------------------------------------------------------------------------------
async def attendance_batch(store, records: list[tuple[str, str]], session_id: str = "s1", **kw) -> dict:
    cmd = RecordAttendances(records=[{"enrollment_id": e, "status": s} for e, s in records], **kw)
    return await handlers.record_attendances(store, session_id, cmd, Trace(correlation_id="attendance-import"))


async def running_session(store, capacity: int, *learners: str, session_id: str = "s1") -> dict[str, str]:
    """A session that started an hour ago, with these learners enrolled in order: learner -> enrollment id."""
    await consume(store, scheduled(session_id, capacity=capacity, starts_in=-timedelta(hours=1)))
    return {learner: (await enroll(store, learner, session_id=session_id))[0]["enrollment_id"]
            for learner in learners}


async def test_attendance_batch_records_corrects_and_skips_unchanged_in_one_append(store) -> None:
    ids = await running_session(store, 3, "ann", "bob", "cid")
    await handlers.record_attendance(store, ids["ann"], RecordAttendance(status="partial"), Trace())
    await handlers.record_attendance(store, ids["cid"], RecordAttendance(status="no_show"), Trace())
    before = len(await stream(store))
    out = await attendance_batch(store, [(ids["ann"], "attended"), (ids["bob"], "attended"),
                                         (ids["cid"], "no_show"), (ids["bob"], "attended")])
    assert [(r["learner_id"], r["attendance"], r["changed"]) for r in out["results"]] == [
        ("ann", "attended", True), ("bob", "attended", True), ("cid", "no_show", False), ("bob", "attended", False)]
    assert (out["recorded"], out["corrected"], out["unchanged"]) == (1, 1, 2)
    new = (await stream(store))[before:]
    assert [(e.data.learner_id, e.data.status, e.data.previous_status) for e in new] == [
        ("ann", "attended", "partial"), ("bob", "attended", None)]
    assert {e.correlation_id for e in new} == {"attendance-import"}
    assert await store.outbox_backlog() == before + 2
    roster = await store.get(ROSTERS, "s1")
    assert [(e["learner_id"], e["attendance"]) for e in roster["enrolled"]] == [
        ("ann", "attended"), ("bob", "attended"), ("cid", "no_show")]
    # the same batch again: nothing new
    again = await attendance_batch(store, [(ids["ann"], "attended"), (ids["bob"], "attended")])
    assert again["unchanged"] == 2 and len(await stream(store)) == before + 2


async def test_attendance_batch_with_one_bad_record_is_refused_whole_naming_the_record(store) -> None:
    ids = await running_session(store, 1, "ann", "bob")  # bob waits: capacity 1
    other = await running_session(store, 5, "dan", session_id="s2")
    before = await store.event_count()

    with pytest.raises(Conflict) as exc:
        await attendance_batch(store, [(ids["ann"], "attended"), (ids["bob"], "attended")])
    assert exc.value.status_code == 409 and exc.value.code == "not_enrolled"
    body = exc.value.body()
    assert body["index"] == 1 and body["enrollment_id"] == ids["bob"]
    assert body["detail"] == [{"field": "records.1.enrollment_id", "error": "not_enrolled",
                               "reason": f"enrollment {ids['bob']} is waitlisted, not enrolled; attendance is "
                                         "recorded for enrolled learners only"}]
    assert "nothing was recorded" in body["message"]

    # an enrollment of another session, and one that does not exist: 422, every refused record listed
    with pytest.raises(Invalid) as exc:
        await attendance_batch(store, [(ids["ann"], "attended"), (other["dan"], "attended"), ("nope", "no_show")])
    body = exc.value.body()
    assert exc.value.status_code == 422 and body["error"] == "unknown_enrollment" and body["index"] == 1
    assert [d["field"] for d in body["detail"]] == ["records.1.enrollment_id", "records.2.enrollment_id"]
    assert body["refused_records"] == 2 and "1 more records refused" in body["message"]

    # the same enrollment twice with different statuses
    with pytest.raises(Invalid) as exc:
        await attendance_batch(store, [(ids["ann"], "attended"), (ids["ann"], "no_show")])
    assert exc.value.code == "conflicting_records"
    assert exc.value.body()["detail"][0]["field"] == "records.1.status"
    assert "records.0" in exc.value.body()["detail"][0]["reason"]

    assert await store.event_count() == before  # none of the refused batches wrote anything
    assert (await store.get(ROSTERS, "s1"))["enrolled"][0].get("attendance") is None
    assert (await store.get(ROSTERS, "s2"))["enrolled"][0].get("attendance") is None


async def test_attendance_batch_refused_before_the_session_starts_unless_backdated_after_it(store) -> None:
    await consume(store, scheduled(starts_in=-timedelta(days=3)))  # ran three days ago, eight hours
    ann, _ = await enroll(store, "ann", as_of=NOW - timedelta(days=4), backdated=True)
    with pytest.raises(Conflict) as exc:  # judged at as_of: before the start
        await attendance_batch(store, [(ann["enrollment_id"], "attended")], as_of=NOW - timedelta(days=3, hours=1),
                               backdated=True)
    assert exc.value.code == "session_not_started" and exc.value.body()["starts_at"]
    ended = NOW - timedelta(days=3) + timedelta(hours=8)
    out = await attendance_batch(store, [(ann["enrollment_id"], "attended")], as_of=ended, backdated=True)
    assert out["recorded"] == 1
    event = (await stream(store))[-1].data
    assert (event.status, event.occurred_at, event.backdated) == ("attended", ended, True)
    with pytest.raises(Invalid):  # a past as_of needs backdated=true
        await attendance_batch(store, [(ann["enrollment_id"], "no_show")], as_of=ended)


async def test_attendance_batch_of_an_unknown_or_cancelled_session_is_refused(store) -> None:
    with pytest.raises(NotFound) as exc:
        await attendance_batch(store, [("e1", "attended")], session_id="ghost")
    assert exc.value.code == "unknown_session" and exc.value.body()["session_id"] == "ghost"
    ids = await running_session(store, 2, "ann")
    await consume(store, Envelope(data=SessionCancelled(session_id="s1", occurred_at=NOW)))
    before = await store.event_count()
    with pytest.raises(Conflict) as exc:
        await attendance_batch(store, [(ids["ann"], "attended")])
    assert exc.value.code == "session_cancelled" and await store.event_count() == before


def test_attendance_batch_is_limited_and_statuses_are_checked() -> None:
    record = {"enrollment_id": "e1", "status": "attended"}
    assert len(RecordAttendances(records=[record] * MAX_BATCH).records) == MAX_BATCH
    with pytest.raises(ValidationError):
        RecordAttendances(records=[record] * (MAX_BATCH + 1))
    with pytest.raises(ValidationError):
        RecordAttendances(records=[])
    with pytest.raises(ValidationError):
        RecordAttendances(records=[{**record, "status": "late"}])
