"""Occupancy of sessions and its rollups. Pure: no storage, no transport.

One ``SessionOccupancy`` per session, fed by events of two topics (scheduling and enrollment) that reach reporting
in any relative order. The counters are sums of +1/-1 steps, so their final value does not depend on the order;
an enrollment event that arrives before the session's ``SessionScheduled`` creates the session with counters only
(status ``awaiting_schedule``) and the plan fills in later.

Counting rules:

- ``LearnerEnrolled``: enrolled +1; if ``promoted_from_waitlist`` also waitlisted -1.
- ``LearnerWaitlisted``: waitlisted +1.
- ``EnrollmentCancelled``: ``previous_status`` (enrolled | waitlisted) loses 1.
- ``AttendanceRecorded``: the bucket of ``status`` gains 1 (attended and partial both count as attended, no_show
  as no_show); a correction also takes 1 from the bucket of ``previous_status``.
- ``SessionScheduled`` sets the plan unless a ``SessionRescheduled`` already did; ``SessionRescheduled`` replaces it
  (capacity, time, time zone, venue: the session moves between months/years in the rollups).
- ``SessionCancelled`` is final: a cancelled session stays cancelled.

Attendance is a fact about the past: a learner who attended the first day of a multi-day session and cancelled
afterwards leaves ``enrolled`` but stays in ``attended`` (the events do not say otherwise), so ``attended`` may
exceed ``enrolled`` in that case.

Rollups (totals, by venue, course, month, year) only look at sessions whose plan is known. A cancelled session
counts in ``cancelled_sessions`` and nowhere else; every other figure, and ``fill_rate = enrolled / capacity``,
is over the sessions that are not cancelled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from shared.contracts.base import IntegrationEvent
from shared.contracts.enrollment import AttendanceRecorded, EnrollmentCancelled, LearnerEnrolled, LearnerWaitlisted
from shared.contracts.scheduling import SessionCancelled, SessionRescheduled, SessionScheduled

SCHEDULED = "scheduled"
CANCELLED = "cancelled"
AWAITING_SCHEDULE = "awaiting_schedule"  # seen through enrollment events only, plan not known yet
FILL_RATE_PLACES = Decimal("0.0001")

SESSION_EVENTS = (
    SessionScheduled, SessionRescheduled, SessionCancelled,
    LearnerEnrolled, LearnerWaitlisted, EnrollmentCancelled, AttendanceRecorded,
)


def fill_rate(enrolled: int, capacity: int) -> Decimal | None:
    """enrolled / capacity rounded half-up to 4 places, in Decimal; None without capacity."""
    if capacity <= 0:
        return None
    return (Decimal(enrolled) / Decimal(capacity)).quantize(FILL_RATE_PLACES, rounding=ROUND_HALF_UP)


def _rate_json(rate: Decimal | None) -> float | None:
    # a JSON number; a 4-place Decimal survives the trip through float exactly as printed (shortest repr)
    return None if rate is None else float(rate)


def _attendance_bucket(status: str) -> str:
    return "no_show" if status == "no_show" else "attended"


@dataclass
class SessionOccupancy:
    """The reporting view of one session."""

    session_id: str
    course_code: str | None = None
    title: str | None = None
    delivery: str | None = None
    venue: str | None = None  # venue_id (classroom) or virtual_room_id (virtual)
    time_zone: str | None = None
    starts_at: str | None = None  # ISO 8601 with offset, as scheduled
    ends_at: str | None = None
    month: str | None = None  # YYYY-MM of the start, local to the session's time zone
    year: int | None = None
    capacity: int = 0
    cancelled: bool = False
    plan_source: str | None = None  # which event set the plan: "scheduled" | "rescheduled"
    enrolled: int = 0
    waitlisted: int = 0
    attended: int = 0  # attended + partial
    no_show: int = 0

    # ----- events ------------------------------------------------------------------------------------------------
    def apply(self, event: IntegrationEvent) -> None:
        if isinstance(event, SessionScheduled):
            if self.plan_source != "rescheduled":
                self._plan(event, "scheduled")
        elif isinstance(event, SessionRescheduled):
            self._plan(event, "rescheduled")
        elif isinstance(event, SessionCancelled):
            self.cancelled = True
        elif isinstance(event, LearnerEnrolled):
            self.enrolled += 1
            if event.promoted_from_waitlist:
                self.waitlisted -= 1
        elif isinstance(event, LearnerWaitlisted):
            self.waitlisted += 1
        elif isinstance(event, EnrollmentCancelled):
            if event.previous_status == "enrolled":
                self.enrolled -= 1
            else:
                self.waitlisted -= 1
        elif isinstance(event, AttendanceRecorded):
            if event.previous_status is not None:
                self._count_attendance(event.previous_status, -1)
            self._count_attendance(event.status, +1)
        else:
            raise TypeError(f"{type(event).__name__} does not concern a session's occupancy")

    def _count_attendance(self, status: str, step: int) -> None:
        bucket = _attendance_bucket(status)
        setattr(self, bucket, getattr(self, bucket) + step)

    def _plan(self, event: SessionScheduled | SessionRescheduled, source: str) -> None:
        start = event.starts_at.astimezone(ZoneInfo(event.time_zone))
        self.course_code = event.course_code
        self.title = event.title
        self.delivery = event.delivery
        if event.delivery == "virtual":
            self.venue = event.virtual_room_id or event.venue_id
        else:
            self.venue = event.venue_id or event.virtual_room_id
        self.time_zone = event.time_zone
        self.starts_at = event.starts_at.isoformat()
        self.ends_at = event.ends_at.isoformat()
        self.month = f"{start.year:04d}-{start.month:02d}"
        self.year = start.year
        self.capacity = event.capacity
        self.plan_source = source

    # ----- reading -----------------------------------------------------------------------------------------------
    @property
    def planned(self) -> bool:
        return self.plan_source is not None

    @property
    def status(self) -> str:
        if self.cancelled:
            return CANCELLED
        return SCHEDULED if self.planned else AWAITING_SCHEDULE

    @property
    def fill_rate(self) -> Decimal | None:
        return fill_rate(self.enrolled, self.capacity)

    def start_time(self) -> datetime | None:
        return datetime.fromisoformat(self.starts_at) if self.starts_at else None

    def view(self) -> dict[str, Any]:
        """What the HTTP API shows for one session."""
        return {
            "session_id": self.session_id,
            "course_code": self.course_code,
            "title": self.title,
            "delivery": self.delivery,
            "venue": self.venue,
            "time_zone": self.time_zone,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "month": self.month,
            "year": self.year,
            "status": self.status,
            "capacity": self.capacity,
            "enrolled": self.enrolled,
            "waitlisted": self.waitlisted,
            "attended": self.attended,
            "no_show": self.no_show,
            "fill_rate": _rate_json(self.fill_rate),
        }

    # ----- document form (what the store keeps) -------------------------------------------------------------------
    def to_document(self) -> dict[str, Any]:
        # every field is a plain value (str, int, bool, None): a flat dict, without asdict's recursive copy
        return {name: getattr(self, name) for name in _FIELD_NAMES}

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> SessionOccupancy:
        return cls(**{k: v for k, v in doc.items() if k in _FIELD_SET})


_FIELD_NAMES = tuple(f.name for f in fields(SessionOccupancy))
_FIELD_SET = frozenset(_FIELD_NAMES)


def session_id_of(event: IntegrationEvent) -> str:
    """Every event that changes occupancy names its session."""
    return event.session_id  # type: ignore[attr-defined, no-any-return]


@dataclass
class Figures:
    """The occupancy figures of a group of sessions."""

    sessions: int = 0
    virtual_sessions: int = 0
    cancelled_sessions: int = 0
    capacity: int = 0
    enrolled: int = 0
    waitlisted: int = 0
    attended: int = 0
    no_show: int = 0

    def add(self, session: SessionOccupancy) -> None:
        if session.cancelled:
            self.cancelled_sessions += 1
            return
        self.sessions += 1
        if session.delivery == "virtual":
            self.virtual_sessions += 1
        self.capacity += session.capacity
        self.enrolled += session.enrolled
        self.waitlisted += session.waitlisted
        self.attended += session.attended
        self.no_show += session.no_show

    @property
    def fill_rate(self) -> Decimal | None:
        return fill_rate(self.enrolled, self.capacity)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fill_rate": _rate_json(self.fill_rate)}


def totals(sessions: Iterable[SessionOccupancy]) -> Figures:
    figures = Figures()
    for session in sessions:
        if session.planned:
            figures.add(session)
    return figures


def rollup(sessions: Iterable[SessionOccupancy], key: Callable[[SessionOccupancy], Any]) -> dict[Any, Figures]:
    """Figures per group (``key`` of each planned session), groups in ascending key order."""
    groups: dict[Any, Figures] = {}
    for session in sessions:
        if session.planned:
            groups.setdefault(key(session), Figures()).add(session)
    return {k: groups[k] for k in sorted(groups, key=lambda k: (k is None, k))}


def by_venue(session: SessionOccupancy) -> str | None:
    return session.venue


def by_course(session: SessionOccupancy) -> str | None:
    return session.course_code


def by_month(session: SessionOccupancy) -> str | None:
    return session.month


def by_year(session: SessionOccupancy) -> int | None:
    return session.year


def matches(session: SessionOccupancy, year: int | None = None, course_code: str | None = None,
            venue: str | None = None) -> bool:
    """The filters of the read API (each one left out matches everything)."""
    return ((year is None or session.year == year)
            and (course_code is None or session.course_code == course_code)
            and (venue is None or session.venue == venue))


def awaiting_schedule(sessions: Iterable[SessionOccupancy]) -> int:
    return sum(1 for s in sessions if not s.planned)
