"""Roster rules, pure: capacity, waitlist order, promotion, idempotency, capacity reduction, attendance."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.enrollment.domain.model import Roster, SessionView
from shared.contracts.enrollment import AttendanceRecorded, EnrollmentCancelled, LearnerEnrolled, LearnerWaitlisted
from shared.errors import Conflict

NOW = datetime(2030, 5, 1, 8, 0, tzinfo=UTC)
START = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
END = datetime(2030, 6, 2, 17, 0, tzinfo=UTC)


def session(capacity: int = 2, cancelled: bool = False) -> SessionView:
    return SessionView("s1", capacity, "Europe/Berlin",
                       ((START, START + timedelta(hours=8)), (END - timedelta(hours=8), END)), cancelled)


def roster_with(capacity: int, *learners: str) -> tuple[Roster, dict[str, str]]:
    roster = Roster(session(capacity))
    ids = {}
    for learner in learners:
        enrollment, _ = roster.enroll(learner, f"e-{learner}", NOW)
        ids[learner] = enrollment.enrollment_id
    return roster, ids


def statuses(roster: Roster) -> dict[str, str]:
    return {e.learner_id: e.status for e in roster.enrollments.values()}


def test_seats_up_to_capacity_then_waitlist_in_order() -> None:
    roster = Roster(session(capacity=2))
    events = []
    for learner in ["ann", "bob", "cid", "dan"]:
        _, new = roster.enroll(learner, f"e-{learner}", NOW)
        events += new
    assert [type(e) for e in events] == [LearnerEnrolled, LearnerEnrolled, LearnerWaitlisted, LearnerWaitlisted]
    assert [e.position for e in events if isinstance(e, LearnerWaitlisted)] == [1, 2]
    assert all(e.session_id == "s1" and e.occurred_at == NOW for e in events)
    assert roster.enrolled_count == 2 and roster.free_seats == 0
    assert [e.learner_id for e in roster.waiting()] == ["cid", "dan"]
    assert roster.position_of("e-dan") == 2


def test_enrolling_again_returns_the_same_enrollment_without_events() -> None:
    roster, ids = roster_with(1, "ann", "bob")
    again, events = roster.enroll("ann", "e-new", NOW)
    assert events == [] and again.enrollment_id == ids["ann"] and again.status == "enrolled"
    waiting, events = roster.enroll("bob", "e-new2", NOW)
    assert events == [] and waiting.enrollment_id == ids["bob"] and waiting.status == "waitlisted"
    assert len(roster.enrollments) == 2


def test_cancelling_a_seat_promotes_the_first_waiting_learner_once() -> None:
    roster, ids = roster_with(2, "ann", "bob", "cid", "dan")
    cancelled, promoted = roster.cancel(ids["ann"], NOW)
    assert isinstance(cancelled, EnrollmentCancelled) and cancelled.previous_status == "enrolled"
    assert cancelled.reason == "learner_request"
    assert [(p.enrollment_id, p.promoted_from_waitlist) for p in promoted] == [(ids["cid"], True)]
    assert statuses(roster) == {"ann": "cancelled", "bob": "enrolled", "cid": "enrolled", "dan": "waitlisted"}
    assert roster.position_of(ids["dan"]) == 1
    # cancelling again: nothing happens, nobody else is promoted
    assert roster.cancel(ids["ann"], NOW) == (None, [])
    assert roster.fill_free_seats(NOW) == []
    assert statuses(roster)["dan"] == "waitlisted"


def test_cancelling_a_waitlist_entry_moves_the_others_up_and_promotes_nobody() -> None:
    roster, ids = roster_with(1, "ann", "bob", "cid", "dan")
    cancelled, promoted = roster.cancel(ids["bob"], NOW)
    assert cancelled is not None and cancelled.previous_status == "waitlisted" and promoted == []
    assert [roster.position_of(ids[x]) for x in ("cid", "dan")] == [1, 2]
    _, new = roster.enroll("eve", "e-eve", NOW)
    assert isinstance(new[0], LearnerWaitlisted) and new[0].position == 3


def test_learner_who_cancelled_may_enroll_again_with_a_new_enrollment() -> None:
    roster, ids = roster_with(2, "ann")
    roster.cancel(ids["ann"], NOW)
    again, events = roster.enroll("ann", "e-ann-2", NOW)
    assert again.enrollment_id == "e-ann-2" and again.status == "enrolled" and len(events) == 1
    assert roster.enrollments[ids["ann"]].status == "cancelled"


def test_roster_rebuilt_from_its_events_is_the_same() -> None:
    events: list[object] = []
    source = Roster(session(1))
    for learner in ("ann", "bob", "cid"):
        events += source.enroll(learner, f"e-{learner}", NOW)[1]
    cancelled, promoted = source.cancel("e-ann", NOW)
    events += [cancelled, *promoted]
    rebuilt = Roster.from_events(session(1), events)
    assert rebuilt.version == 5
    assert statuses(rebuilt) == {"ann": "cancelled", "bob": "enrolled", "cid": "waitlisted"}
    assert rebuilt.enrollments["e-bob"].promoted_from_waitlist is True
    assert rebuilt.waitlist == ["e-cid"]


def test_capacity_growth_promotes_as_many_as_new_seats_in_order() -> None:
    roster, ids = roster_with(1, "ann", "bob", "cid", "dan")
    promoted = roster.session_changed(session(capacity=3), NOW)
    assert [p.learner_id for p in promoted] == ["bob", "cid"]
    assert all(p.promoted_from_waitlist for p in promoted)
    assert roster.position_of(ids["dan"]) == 1
    assert roster.session_changed(session(capacity=3), NOW) == []  # same plan again: no second promotion


def test_capacity_reduced_below_enrolled_bumps_nobody_and_waitlists_until_below_capacity() -> None:
    roster, ids = roster_with(4, "ann", "bob", "cid", "dan")
    assert roster.session_changed(session(capacity=2), NOW) == []
    assert roster.enrolled_count == 4  # nobody bumped
    _, new = roster.enroll("eve", "e-eve", NOW)
    assert isinstance(new[0], LearnerWaitlisted)
    # 4 -> 3 enrolled, still not below capacity 2: nobody promoted
    assert roster.cancel(ids["ann"], NOW)[1] == []
    assert roster.cancel(ids["bob"], NOW)[1] == []  # 2 enrolled = capacity
    # 2 -> 1 enrolled: below capacity, eve gets the seat
    assert [p.learner_id for p in roster.cancel(ids["cid"], NOW)[1]] == ["eve"]


def test_cancelled_session_takes_nobody_and_cancels_everyone_without_promotion() -> None:
    roster, ids = roster_with(1, "ann", "bob", "cid")
    cancelled = roster.session_cancelled(session(1, cancelled=True), NOW)
    assert {(c.learner_id, c.previous_status, c.reason) for c in cancelled} == {
        ("ann", "enrolled", "session_cancelled"), ("bob", "waitlisted", "session_cancelled"),
        ("cid", "waitlisted", "session_cancelled")}
    assert not any(isinstance(e, LearnerEnrolled) for e in cancelled)
    assert set(statuses(roster).values()) == {"cancelled"}
    with pytest.raises(Conflict) as exc:
        roster.enroll("dan", "e-dan", NOW)
    assert exc.value.code == "session_cancelled"
    assert roster.session_cancelled(session(1, cancelled=True), NOW) == []


def test_finished_session_takes_no_enrollment_judged_at_the_given_time() -> None:
    roster = Roster(session(5))
    with pytest.raises(Conflict) as exc:
        roster.enroll("ann", "e-ann", END)
    assert exc.value.code == "session_finished"
    # during the session a late learner is still taken
    enrollment, _ = roster.enroll("ann", "e-ann", START + timedelta(hours=1))
    assert enrollment.status == "enrolled"
    with pytest.raises(Conflict) as exc:
        roster.cancel("e-ann", END + timedelta(days=1))
    assert exc.value.code == "session_finished"


def test_attendance_only_for_enrolled_and_not_before_start() -> None:
    roster, ids = roster_with(1, "ann", "bob")
    during = START + timedelta(hours=2)
    with pytest.raises(Conflict) as exc:
        roster.record_attendance(ids["ann"], "attended", START - timedelta(minutes=1))
    assert exc.value.code == "session_not_started"
    with pytest.raises(Conflict) as exc:
        roster.record_attendance(ids["bob"], "attended", during)
    assert exc.value.code == "not_enrolled" and exc.value.details["status"] == "waitlisted"

    first = roster.record_attendance(ids["ann"], "attended", during)
    assert isinstance(first, AttendanceRecorded) and first.status == "attended" and first.previous_status is None
    assert roster.record_attendance(ids["ann"], "attended", during) is None  # same status again: nothing
    correction = roster.record_attendance(ids["ann"], "partial", END + timedelta(days=3))
    assert correction is not None and correction.previous_status == "attended" and correction.status == "partial"
    assert roster.enrollments[ids["ann"]].attendance == "partial"


def test_attendance_of_a_cancelled_enrollment_is_refused() -> None:
    roster, ids = roster_with(1, "ann")
    roster.cancel(ids["ann"], NOW)
    with pytest.raises(Conflict) as exc:
        roster.record_attendance(ids["ann"], "no_show", START + timedelta(hours=1))
    assert exc.value.code == "not_enrolled"


def test_session_known_only_as_cancelled_has_no_times() -> None:
    view = replace(SessionView("s9", 0, None, ()), cancelled=True)
    assert view.starts_at is None and not view.finished_at(NOW) and view.status == "cancelled"


def test_seat_count_and_live_enrollment_index_agree_with_the_enrollments_after_random_histories() -> None:
    """The roster keeps the seats taken and each learner's live enrollment up to date as events apply (a bulk import
    must not rescan the roster per learner); after any mix of enrollments, re-enrollments, cancellations and
    promotions they equal what a scan of the enrollments gives, also for a roster rebuilt from its events."""
    import random

    rng = random.Random(20261203)
    for _ in range(200):
        roster = Roster(session(capacity=rng.randint(1, 5)))
        history: list[object] = []
        for step in range(40):
            learner = f"l{rng.randint(1, 8)}"
            if rng.random() < 0.6:
                _, new = roster.enroll(learner, f"e-{step}", NOW)
                history += new
            elif live := [e for e in roster.enrollments.values() if e.live]:
                cancelled, promoted = roster.cancel(rng.choice(live).enrollment_id, NOW)
                history += [cancelled, *promoted]
            for r in (roster, Roster.from_events(roster.session, history)):
                scan = [e for e in r.enrollments.values() if e.status == "enrolled"]
                assert r.enrolled_count == len(scan) <= r.session.capacity
                for who in {e.learner_id for e in r.enrollments.values()}:
                    live_scan = [e for e in r.enrollments.values() if e.learner_id == who and e.live]
                    assert len(live_scan) <= 1
                    assert r.live_enrollment_of(who) == (live_scan[0] if live_scan else None)
