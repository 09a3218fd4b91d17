"""Pure occupancy and budget rules of reporting: counters, rollups, fill rate, remaining budget."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.reporting.domain import occupancy as rules
from services.reporting.domain.budget import BudgetLine, remaining
from services.reporting.domain.occupancy import Figures, SessionOccupancy, fill_rate
from shared.contracts.base import Money
from shared.contracts.enrollment import AttendanceRecorded, EnrollmentCancelled, LearnerEnrolled, LearnerWaitlisted
from shared.contracts.finance import BudgetAllocated, CostIncurred
from shared.contracts.scheduling import SessionCancelled, SessionRescheduled, SessionScheduled

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def plan(**overrides) -> dict:
    data = {
        "course_code": "SWC", "title": "Software Carpentry", "delivery": "classroom", "venue_id": "room-a",
        "time_zone": "Europe/Berlin", "capacity": 4, "cost_centre": "CC-1",
        "slots": [{"starts_at": "2030-03-02T09:00:00+01:00", "ends_at": "2030-03-02T17:00:00+01:00"}],
    }
    data.update(overrides)
    return data


def scheduled(session_id: str = "s1", **overrides) -> SessionScheduled:
    return SessionScheduled(occurred_at=NOW, session_id=session_id, **plan(**overrides))


def rescheduled(session_id: str = "s1", **overrides) -> SessionRescheduled:
    return SessionRescheduled(occurred_at=NOW, session_id=session_id, **plan(**overrides))


def cancelled(session_id: str = "s1") -> SessionCancelled:
    return SessionCancelled(occurred_at=NOW, session_id=session_id, reason="trainer ill")


def _ids(n: int, session_id: str) -> dict:
    return {"occurred_at": NOW, "enrollment_id": f"e{n}", "session_id": session_id, "learner_id": f"l{n}"}


def enrolled(n: int, session_id: str = "s1", promoted: bool = False) -> LearnerEnrolled:
    return LearnerEnrolled(**_ids(n, session_id), promoted_from_waitlist=promoted)


def waitlisted(n: int, session_id: str = "s1", position: int = 1) -> LearnerWaitlisted:
    return LearnerWaitlisted(**_ids(n, session_id), position=position)


def enrollment_cancelled(n: int, previous: str, session_id: str = "s1") -> EnrollmentCancelled:
    return EnrollmentCancelled(**_ids(n, session_id), previous_status=previous)


def attendance(n: int, status: str, previous: str | None = None, session_id: str = "s1") -> AttendanceRecorded:
    return AttendanceRecorded(**_ids(n, session_id), status=status, previous_status=previous)


def replay(events, session_id: str = "s1") -> SessionOccupancy:
    session = SessionOccupancy(session_id)
    for event in events:
        session.apply(event)
    return session


def counters(session: SessionOccupancy) -> tuple:
    return session.enrolled, session.waitlisted, session.attended, session.no_show


# ----- counters of one session -----------------------------------------------------------------------------------

def test_session_view_from_schedule_and_enrollments() -> None:
    session = replay([scheduled(), enrolled(1), enrolled(2), enrolled(3), waitlisted(4)])
    view = session.view()
    assert view == {
        "session_id": "s1", "course_code": "SWC", "title": "Software Carpentry", "delivery": "classroom",
        "venue": "room-a", "time_zone": "Europe/Berlin", "starts_at": "2030-03-02T09:00:00+01:00",
        "ends_at": "2030-03-02T17:00:00+01:00", "month": "2030-03", "year": 2030, "status": "scheduled",
        "capacity": 4, "enrolled": 3, "waitlisted": 1, "attended": 0, "no_show": 0, "fill_rate": 0.75,
    }


def test_enrollment_before_schedule_creates_the_session_and_the_plan_fills_in_later() -> None:
    session = replay([enrolled(1), waitlisted(2)])
    assert session.status == "awaiting_schedule"
    assert session.course_code is None and session.fill_rate is None
    assert counters(session) == (1, 1, 0, 0)
    session.apply(scheduled())
    assert session.status == "scheduled" and session.course_code == "SWC" and session.capacity == 4
    assert counters(session) == (1, 1, 0, 0)
    assert session.fill_rate == Decimal("0.25")


def test_counters_are_the_same_in_any_order() -> None:
    events = [
        scheduled(), enrolled(1), enrolled(2), waitlisted(3), enrolled(3, promoted=True),
        enrollment_cancelled(2, "enrolled"), waitlisted(4), enrollment_cancelled(4, "waitlisted"),
        attendance(1, "no_show"), attendance(1, "partial", previous="no_show"), attendance(3, "no_show"),
        rescheduled(capacity=6),
    ]
    expected = replay(events)
    assert counters(expected) == (2, 0, 1, 1)
    assert expected.capacity == 6
    shuffler = random.Random(7)
    for _ in range(200):
        order = events[:]
        shuffler.shuffle(order)
        got = replay(order)
        assert got.to_document() == expected.to_document(), [type(e).__name__ for e in order]


def test_promotion_from_waitlist_moves_a_learner_from_waitlisted_to_enrolled() -> None:
    session = replay([scheduled(capacity=1), enrolled(1), waitlisted(2), waitlisted(3, position=2),
                      enrollment_cancelled(1, "enrolled"), enrolled(2, promoted=True)])
    assert (session.enrolled, session.waitlisted) == (1, 1)
    assert session.fill_rate == Decimal("1")


@pytest.mark.parametrize(("previous", "expected"), [("enrolled", (0, 1)), ("waitlisted", (1, 0))])
def test_cancellation_drops_the_counter_of_the_previous_status(previous, expected) -> None:
    session = replay([scheduled(), enrolled(1), waitlisted(2), enrollment_cancelled(9, previous)])
    assert (session.enrolled, session.waitlisted) == expected


def test_attendance_counts_attended_and_partial_together_and_corrections_move_the_learner() -> None:
    session = replay([scheduled(), *(enrolled(n) for n in range(4)),
                      attendance(0, "attended"), attendance(1, "partial"), attendance(2, "no_show")])
    assert (session.attended, session.no_show) == (2, 1)
    session.apply(attendance(2, "attended", previous="no_show"))  # correction: was no-show, came after all
    assert (session.attended, session.no_show) == (3, 0)
    session.apply(attendance(0, "partial", previous="attended"))  # same bucket: no change
    assert (session.attended, session.no_show) == (3, 0)
    session.apply(attendance(1, "no_show", previous="partial"))
    assert (session.attended, session.no_show) == (2, 1)


def test_reschedule_replaces_capacity_time_and_venue_and_a_late_schedule_does_not_undo_it() -> None:
    session = replay([scheduled(), enrolled(1)])
    session.apply(rescheduled(capacity=8, delivery="virtual", venue_id=None, virtual_room_id="zoom-1",
                              slots=[{"starts_at": "2031-01-01T00:30:00+01:00",
                                      "ends_at": "2031-01-01T02:00:00+01:00"}]))
    assert (session.capacity, session.venue, session.delivery) == (8, "zoom-1", "virtual")
    assert (session.month, session.year) == ("2031-01", 2031)
    session.apply(scheduled())  # the original plan, seen again late: the reschedule stays
    assert (session.capacity, session.venue, session.year) == (8, "zoom-1", 2031)


def test_month_and_year_are_local_to_the_session_time_zone() -> None:
    # 23:30 UTC on New Year's Eve is already January in Berlin
    session = replay([scheduled(slots=[{"starts_at": "2030-12-31T23:30:00+00:00",
                                        "ends_at": "2031-01-01T03:00:00+00:00"}])])
    assert (session.month, session.year) == ("2031-01", 2031)
    session = replay([scheduled(time_zone="America/New_York",
                                slots=[{"starts_at": "2031-01-01T03:00:00+00:00",
                                        "ends_at": "2031-01-01T05:00:00+00:00"}])])
    assert (session.month, session.year) == ("2030-12", 2030)


def test_cancellation_is_final_whatever_the_order() -> None:
    for order in itertools.permutations([scheduled(), rescheduled(capacity=9), cancelled()]):
        session = replay(order)
        assert session.status == "cancelled"


def test_document_round_trip_keeps_everything() -> None:
    session = replay([enrolled(1), scheduled(), cancelled(), attendance(1, "no_show")])
    assert SessionOccupancy.from_document(session.to_document()) == session


# ----- rollups -----------------------------------------------------------------------------------------------------

def sessions_fixture() -> list[SessionOccupancy]:
    a = replay([scheduled("a", capacity=3), enrolled(1, "a"), enrolled(2, "a"), attendance(1, "attended", session_id="a"),
                attendance(2, "no_show", session_id="a")], "a")
    b = replay([scheduled("b", course_code="DC", capacity=10, delivery="virtual", venue_id=None,
                          virtual_room_id="zoom-1"), *(enrolled(n, "b") for n in range(10)),
                waitlisted(11, "b"), attendance(3, "partial", session_id="b")], "b")
    c = replay([scheduled("c", capacity=5, slots=[{"starts_at": "2031-04-01T09:00:00+02:00",
                                                  "ends_at": "2031-04-01T17:00:00+02:00"}]),
                enrolled(1, "c")], "c")
    gone = replay([scheduled("gone", capacity=50), enrolled(1, "gone"), waitlisted(2, "gone"), cancelled("gone")],
                  "gone")
    early = replay([enrolled(1, "early"), enrolled(2, "early")], "early")  # plan not known yet
    return [a, b, c, gone, early]


def test_totals_exclude_cancelled_sessions_and_sessions_without_plan() -> None:
    sessions = sessions_fixture()
    totals = rules.totals(sessions).as_dict()
    assert totals == {
        "sessions": 3, "virtual_sessions": 1, "cancelled_sessions": 1, "capacity": 18, "enrolled": 13,
        "waitlisted": 1, "attended": 2, "no_show": 1, "fill_rate": 0.7222,
    }
    assert rules.awaiting_schedule(sessions) == 1


def test_rollups_group_by_venue_course_month_and_year() -> None:
    sessions = sessions_fixture()
    by_venue = {k: v.as_dict() for k, v in rules.rollup(sessions, rules.by_venue).items()}
    assert list(by_venue) == ["room-a", "zoom-1"]
    assert by_venue["room-a"]["sessions"] == 2 and by_venue["room-a"]["cancelled_sessions"] == 1
    assert by_venue["room-a"]["capacity"] == 8 and by_venue["room-a"]["enrolled"] == 3
    assert by_venue["room-a"]["fill_rate"] == 0.375
    assert by_venue["zoom-1"]["virtual_sessions"] == 1 and by_venue["zoom-1"]["fill_rate"] == 1.0

    by_course = {k: (v.sessions, v.enrolled) for k, v in rules.rollup(sessions, rules.by_course).items()}
    assert by_course == {"DC": (1, 10), "SWC": (2, 3)}
    by_month = {k: (v.sessions, v.cancelled_sessions, v.capacity) for k, v in
                rules.rollup(sessions, rules.by_month).items()}
    assert by_month == {"2030-03": (2, 1, 13), "2031-04": (1, 0, 5)}
    by_year = {k: v.enrolled for k, v in rules.rollup(sessions, rules.by_year).items()}
    assert by_year == {2030: 12, 2031: 1}


def test_rescheduling_moves_a_session_to_another_month_and_year() -> None:
    sessions = sessions_fixture()
    c = sessions[2]
    c.apply(rescheduled("c", capacity=5, slots=[{"starts_at": "2030-03-20T09:00:00+01:00",
                                                 "ends_at": "2030-03-20T17:00:00+01:00"}]))
    by_month = {k: v.sessions for k, v in rules.rollup(sessions, rules.by_month).items()}
    assert by_month == {"2030-03": 3}
    assert list(rules.rollup(sessions, rules.by_year)) == [2030]


def test_only_cancelled_sessions_give_no_fill_rate() -> None:
    gone = replay([scheduled("gone"), enrolled(1, "gone"), cancelled("gone")], "gone")
    figures = rules.totals([gone]).as_dict()
    assert figures["cancelled_sessions"] == 1 and figures["sessions"] == 0
    assert figures["capacity"] == 0 and figures["enrolled"] == 0 and figures["fill_rate"] is None


@pytest.mark.parametrize(("enrolled_", "capacity", "expected"), [
    (1, 3, Decimal("0.3333")), (2, 3, Decimal("0.6667")), (1, 8, Decimal("0.1250")),
    (1, 20000, Decimal("0.0001")), (1, 40000, Decimal("0.0000")), (3, 40000, Decimal("0.0001")),
    (12, 10, Decimal("1.2000")), (0, 5, Decimal("0")), (3, 0, None),
])
def test_fill_rate_is_decimal_rounded_half_up_to_four_places(enrolled_, capacity, expected) -> None:
    assert fill_rate(enrolled_, capacity) == expected


def test_fill_rate_in_json_is_the_four_place_number() -> None:
    figures = Figures(sessions=1, capacity=3, enrolled=2)
    assert figures.as_dict()["fill_rate"] == 0.6667
    assert repr(figures.as_dict()["fill_rate"]) == "0.6667"


def test_filters_match_year_course_and_venue() -> None:
    sessions = sessions_fixture()
    assert [s.session_id for s in sessions if rules.matches(s, year=2031)] == ["c"]
    assert [s.session_id for s in sessions if rules.matches(s, course_code="DC")] == ["b"]
    assert [s.session_id for s in sessions if rules.matches(s, venue="room-a", year=2030)] == ["a", "gone"]


# ----- budgets -----------------------------------------------------------------------------------------------------

def eur(amount: str, currency: str = "EUR") -> Money:
    return Money(amount=Decimal(amount), currency=currency)


def cost(cost_id: str, kind: str, amount: str, reverses: str | None = None) -> CostIncurred:
    return CostIncurred(occurred_at=NOW, cost_id=cost_id, cost_centre="CC-1", period="2030", kind=kind,
                        reason="invoice" if kind == "actual" else "planned_cost", category="venue_hire",
                        amount=eur(amount), reverses=reverses)


def test_budget_line_sums_allocations_commitments_and_reversals() -> None:
    line = BudgetLine("CC-1", "2030", "EUR")
    for event in [
        BudgetAllocated(occurred_at=NOW, allocation_id="a1", cost_centre="CC-1", period="2030", amount=eur("1000.10")),
        BudgetAllocated(occurred_at=NOW, allocation_id="a2", cost_centre="CC-1", period="2030", amount=eur("0.20")),
        cost("c1", "committed", "300.00"), cost("c2", "committed", "0.10"),
        cost("c3", "committed", "-300.00", reverses="c1"), cost("c4", "actual", "120.05"),
    ]:
        line.apply(event)
    assert line.view() == {"cost_centre": "CC-1", "period": "2030", "currency": "EUR", "allocated": "1000.30",
                           "committed": "0.10", "actual": "120.05", "remaining": "880.25"}
    assert BudgetLine.from_document(line.to_document()) == line


def test_budget_line_refuses_an_event_of_another_line() -> None:
    line = BudgetLine("CC-1", "2030", "USD")
    with pytest.raises(ValueError):
        line.apply(cost("c1", "committed", "1.00"))


@pytest.mark.parametrize(("allocated", "committed", "actual", "expected"), [
    ("1000", "300", "100", "700"),  # commitments not invoiced yet count
    ("1000", "300", "450", "550"),  # invoices above commitments count
    ("1000", "0", "0", "1000"),
    ("100", "250", "0", "-150"),  # overspent
])
def test_remaining_is_allocated_minus_the_larger_of_committed_and_actual(allocated, committed, actual,
                                                                        expected) -> None:
    assert remaining(Decimal(allocated), Decimal(committed), Decimal(actual)) == Decimal(expected)
