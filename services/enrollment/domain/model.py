"""The roster of one session: who holds a seat, who waits, who attended. Pure: no storage, no transport.

A ``Roster`` is rebuilt from the session's enrollment events (stream ``roster-<session_id>``) together with
enrollment's own view of the session (``SessionView``, kept from scheduling's events). Every decision returns
the events it produced and has already applied them, so a caller can take several decisions in a row (a batch
import, a cancellation followed by a promotion) and append everything in one transaction.

Seat rules:

* A learner holds at most one live (enrolled or waitlisted) enrollment per session. Enrolling again while
  holding one returns that enrollment and produces nothing.
* A new learner gets a seat when fewer than ``capacity`` learners are enrolled and nobody is waiting;
  otherwise the learner joins the end of the waitlist.
* When a seat frees up (an enrolled learner cancels, or the capacity grows) the first waiting learner is
  promoted, as many times as there are free seats. Each waiting learner is promoted at most once: promotion
  changes the status, so a repeated decision finds nobody left to promote.
* Capacity reduced below the number enrolled: nobody is bumped. New learners are waitlisted and cancellations
  promote nobody until fewer than ``capacity`` learners are enrolled again.
* A cancelled session cancels every live enrollment (``reason=session_cancelled``) and takes no new ones.
* A finished session (its last slot ended at the time the command is judged at) takes no new enrollments and
  no learner cancellations.
* Attendance is recorded only for enrolled learners, and not before the session starts. Recording the same
  status again changes nothing; another status is a correction that names the status it replaces.
* A batch of attendance records (one session) is all or nothing: one record that breaks a rule refuses the
  whole batch (``Roster.record_attendances``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from shared.contracts.enrollment import (
    AttendanceRecorded,
    AttendanceStatus,
    EnrollmentCancelled,
    LearnerEnrolled,
    LearnerWaitlisted,
)
from shared.contracts.scheduling import SessionPlan
from shared.errors import CommandRejected, Conflict, Invalid, NotFound

EnrollmentStatus = Literal["enrolled", "waitlisted", "cancelled"]
RosterEvent = LearnerEnrolled | LearnerWaitlisted | EnrollmentCancelled | AttendanceRecorded


@dataclass(frozen=True)
class SessionView:
    """What enrollment knows about a session, from scheduling's events (never by asking scheduling).

    A session known only from its cancellation (its plan was never seen) has capacity 0 and no times."""

    session_id: str
    capacity: int
    time_zone: str | None
    slots: tuple[tuple[datetime, datetime], ...]
    cancelled: bool = False

    @classmethod
    def from_plan(cls, session_id: str, plan: SessionPlan, cancelled: bool = False) -> SessionView:
        return cls(
            session_id=session_id,
            capacity=plan.capacity,
            time_zone=plan.time_zone,
            slots=tuple((s.starts_at, s.ends_at) for s in plan.slots),
            cancelled=cancelled,
        )

    @property
    def starts_at(self) -> datetime | None:
        return self.slots[0][0] if self.slots else None

    @property
    def ends_at(self) -> datetime | None:
        return self.slots[-1][1] if self.slots else None

    @property
    def status(self) -> str:
        return "cancelled" if self.cancelled else "scheduled"

    def finished_at(self, now: datetime) -> bool:
        return self.ends_at is not None and now >= self.ends_at

    def started_at(self, now: datetime) -> bool:
        return self.starts_at is not None and now >= self.starts_at


@dataclass
class Enrollment:
    enrollment_id: str
    learner_id: str
    status: EnrollmentStatus
    attendance: AttendanceStatus | None = None
    promoted_from_waitlist: bool = False

    @property
    def live(self) -> bool:
        return self.status != "cancelled"


@dataclass
class Roster:
    """State of one session's roster, rebuilt from its events."""

    session: SessionView
    version: int = 0
    enrollments: dict[str, Enrollment] = field(default_factory=dict)  # in the order they were taken
    waitlist: list[str] = field(default_factory=list)  # enrollment ids, first = next to be promoted
    # kept up to date by ``apply``, so a bulk import of n learners is not n^2: seats taken, live enrollment by learner
    _enrolled: int = field(default=0, init=False, repr=False, compare=False)
    _live: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_events(cls, session: SessionView, events: list[object]) -> Roster:
        roster = cls(session)
        for event in events:
            roster.apply(event)
        return roster

    @property
    def session_id(self) -> str:
        return self.session.session_id

    # state -------------------------------------------------------------------------------------------------
    def apply(self, event: object) -> None:
        self.version += 1
        if isinstance(event, LearnerEnrolled):
            existing = self.enrollments.get(event.enrollment_id)
            if existing is not None:  # promotion of a waiting learner
                if existing.status != "enrolled":
                    self._enrolled += 1
                existing.status = "enrolled"
                existing.promoted_from_waitlist = event.promoted_from_waitlist
                self._leave_waitlist(event.enrollment_id)
            else:
                self.enrollments[event.enrollment_id] = Enrollment(
                    event.enrollment_id, event.learner_id, "enrolled",
                    promoted_from_waitlist=event.promoted_from_waitlist,
                )
                self._enrolled += 1
            self._live[event.learner_id] = event.enrollment_id
        elif isinstance(event, LearnerWaitlisted):
            self.enrollments[event.enrollment_id] = Enrollment(event.enrollment_id, event.learner_id, "waitlisted")
            self.waitlist.append(event.enrollment_id)
            self._live[event.learner_id] = event.enrollment_id
        elif isinstance(event, EnrollmentCancelled):
            enrollment = self.enrollments[event.enrollment_id]
            if enrollment.status == "enrolled":
                self._enrolled -= 1
            enrollment.status = "cancelled"
            if self._live.get(enrollment.learner_id) == event.enrollment_id:
                del self._live[enrollment.learner_id]
            self._leave_waitlist(event.enrollment_id)
        elif isinstance(event, AttendanceRecorded):
            self.enrollments[event.enrollment_id].attendance = event.status

    def _leave_waitlist(self, enrollment_id: str) -> None:
        if enrollment_id in self.waitlist:
            self.waitlist.remove(enrollment_id)

    @property
    def enrolled(self) -> list[Enrollment]:
        return [e for e in self.enrollments.values() if e.status == "enrolled"]

    @property
    def enrolled_count(self) -> int:
        return self._enrolled

    @property
    def free_seats(self) -> int:
        return max(self.session.capacity - self.enrolled_count, 0)

    def waiting(self) -> list[Enrollment]:
        return [self.enrollments[i] for i in self.waitlist]

    def positions(self) -> dict[str, int]:
        """Every waiting enrollment's position (1 = next), in one pass: for views listing many of them."""
        return {enrollment_id: n for n, enrollment_id in enumerate(self.waitlist, start=1)}

    def position_of(self, enrollment_id: str) -> int | None:
        """1 = next to be promoted; None when not waiting."""
        try:
            return self.waitlist.index(enrollment_id) + 1
        except ValueError:
            return None

    def live_enrollment_of(self, learner_id: str) -> Enrollment | None:
        enrollment_id = self._live.get(learner_id)
        return self.enrollments[enrollment_id] if enrollment_id is not None else None

    def get(self, enrollment_id: str) -> Enrollment:
        found = self.enrollments.get(enrollment_id)
        if found is None:
            raise NotFound(f"no enrollment {enrollment_id}", code="unknown_enrollment")
        return found

    # decisions ---------------------------------------------------------------------------------------------
    def _record(self, event: RosterEvent) -> RosterEvent:
        self.apply(event)
        return event

    def enroll(self, learner_id: str, enrollment_id: str, now: datetime,
               backdated: bool = False) -> tuple[Enrollment, list[RosterEvent]]:
        """(the learner's enrollment, the events). Idempotent: a learner holding one gets it back, no events."""
        if self.session.cancelled:
            raise Conflict(f"session {self.session_id} is cancelled", code="session_cancelled")
        existing = self.live_enrollment_of(learner_id)
        if existing is not None:
            return existing, []
        if self.session.finished_at(now):
            raise Conflict(f"session {self.session_id} is over", code="session_finished",
                           details={"ended_at": self.session.ends_at.isoformat() if self.session.ends_at else None})
        common = {"enrollment_id": enrollment_id, "session_id": self.session_id, "learner_id": learner_id,
                  "occurred_at": now, "backdated": backdated}
        event: RosterEvent
        if self.enrolled_count < self.session.capacity and not self.waitlist:
            event = LearnerEnrolled(**common)
        else:
            event = LearnerWaitlisted(**common, position=len(self.waitlist) + 1)
        self._record(event)
        return self.enrollments[enrollment_id], [event]

    def fill_free_seats(self, now: datetime, backdated: bool = False) -> list[LearnerEnrolled]:
        """Promote waiting learners, first come first served, while seats are free."""
        if self.session.cancelled:
            return []
        promoted: list[LearnerEnrolled] = []
        while self.waitlist and self.enrolled_count < self.session.capacity:
            first = self.enrollments[self.waitlist[0]]
            event = LearnerEnrolled(enrollment_id=first.enrollment_id, session_id=self.session_id,
                                    learner_id=first.learner_id, occurred_at=now, backdated=backdated,
                                    promoted_from_waitlist=True)
            self._record(event)
            promoted.append(event)
        return promoted

    def cancel(self, enrollment_id: str, now: datetime,
               backdated: bool = False) -> tuple[EnrollmentCancelled | None, list[LearnerEnrolled]]:
        """A learner's cancellation: (the cancellation or None if already cancelled, the promotions it caused)."""
        enrollment = self.get(enrollment_id)
        if enrollment.status == "cancelled":
            return None, []
        if self.session.finished_at(now):
            raise Conflict(f"session {self.session_id} is over; its enrollments can no longer be cancelled",
                           code="session_finished")
        previous = enrollment.status
        cancelled = EnrollmentCancelled(enrollment_id=enrollment_id, session_id=self.session_id,
                                        learner_id=enrollment.learner_id, occurred_at=now, backdated=backdated,
                                        previous_status=previous, reason="learner_request")
        self._record(cancelled)
        promoted = self.fill_free_seats(now, backdated) if previous == "enrolled" else []
        return cancelled, promoted

    def session_changed(self, session: SessionView, now: datetime, backdated: bool = False) -> list[LearnerEnrolled]:
        """The session was rescheduled: take its new plan; seats added by a larger capacity go to the waitlist.

        Capacity reduced below the number enrolled: nobody is bumped; new learners are waitlisted (and
        cancellations promote nobody) until fewer than ``capacity`` learners are enrolled."""
        self.session = session
        return self.fill_free_seats(now, backdated)

    def session_cancelled(self, session: SessionView, now: datetime,
                          backdated: bool = False) -> list[EnrollmentCancelled]:
        """Every live enrollment ends with the session; nobody is promoted."""
        self.session = session
        out: list[EnrollmentCancelled] = []
        for e in list(self.enrollments.values()):
            if e.status == "cancelled":
                continue
            event = EnrollmentCancelled(enrollment_id=e.enrollment_id, session_id=self.session_id,
                                        learner_id=e.learner_id, occurred_at=now, backdated=backdated,
                                        previous_status=e.status, reason="session_cancelled")
            self._record(event)
            out.append(event)
        return out

    def record_attendance(self, enrollment_id: str, status: AttendanceStatus, now: datetime,
                          backdated: bool = False) -> AttendanceRecorded | None:
        enrollment = self.get(enrollment_id)
        if enrollment.status != "enrolled":
            raise Conflict(f"enrollment {enrollment_id} is {enrollment.status}, not enrolled; "
                           "attendance is recorded for enrolled learners only",
                           code="not_enrolled", details={"status": enrollment.status})
        if not self.session.started_at(now):
            raise Conflict(f"session {self.session_id} has not started yet",
                           code="session_not_started",
                           details={"starts_at": self.session.starts_at.isoformat() if self.session.starts_at
                                    else None})
        if enrollment.attendance == status:
            return None
        event = AttendanceRecorded(enrollment_id=enrollment_id, session_id=self.session_id,
                                   learner_id=enrollment.learner_id, occurred_at=now, backdated=backdated,
                                   status=status, previous_status=enrollment.attendance)
        self._record(event)
        return event

    def record_attendances(self, records: Sequence[tuple[str, AttendanceStatus]], now: datetime,
                           backdated: bool = False) -> list[tuple[Enrollment, AttendanceRecorded | None]]:
        """Attendance of several enrollments of this session, all or nothing, in the order given.

        Returns (the enrollment, its event or None when unchanged) per record. Every record follows the rules of
        ``record_attendance``; an enrollment listed twice must carry the same status both times. A refusal names
        the first refused record (``index``, its field) and lists every refused record in ``detail``; the caller
        then writes nothing (the events of the records before it are only applied to this in-memory roster)."""
        if self.session.cancelled:
            raise Conflict(f"session {self.session_id} is cancelled: its enrollments are cancelled, no attendance "
                           "can be recorded", code="session_cancelled")
        if not self.session.started_at(now):
            raise Conflict(f"session {self.session_id} has not started yet", code="session_not_started",
                           details={"starts_at": self.session.starts_at.isoformat() if self.session.starts_at
                                    else None})
        first: dict[str, tuple[int, AttendanceStatus]] = {}
        refused: list[_Refusal] = []
        out: list[tuple[Enrollment, AttendanceRecorded | None]] = []
        for n, (enrollment_id, status) in enumerate(records):
            seen_at, seen_status = first.setdefault(enrollment_id, (n, status))
            enrollment = self.enrollments.get(enrollment_id)
            if seen_status != status:
                refused.append(_Refusal(Invalid, "conflicting_records", n, enrollment_id, f"records.{n}.status",
                                        f"enrollment {enrollment_id} is also listed at records.{seen_at} with status "
                                        f"{seen_status}: one status per enrollment in a batch"))
            elif enrollment is None:
                refused.append(_Refusal(Invalid, "unknown_enrollment", n, enrollment_id,
                                        f"records.{n}.enrollment_id",
                                        f"no enrollment {enrollment_id} in session {self.session_id}"))
            elif enrollment.status != "enrolled":
                refused.append(_Refusal(Conflict, "not_enrolled", n, enrollment_id, f"records.{n}.enrollment_id",
                                        f"enrollment {enrollment_id} is {enrollment.status}, not enrolled; "
                                        "attendance is recorded for enrolled learners only"))
            else:
                out.append((enrollment, self.record_attendance(enrollment_id, status, now, backdated)))
        if refused:
            raise _batch_refused(refused)
        return out


@dataclass(frozen=True)
class _Refusal:
    kind: type[Invalid] | type[Conflict]
    code: str
    index: int
    enrollment_id: str
    field: str
    reason: str


def _batch_refused(refused: list[_Refusal]) -> CommandRejected:
    """One error for the whole batch: status and code of the first refused record, every refused record listed."""
    first = refused[0]
    more = f" ({len(refused) - 1} more records refused, see detail)" if len(refused) > 1 else ""
    details = {
        "index": first.index,
        "enrollment_id": first.enrollment_id,
        "refused_records": len(refused),
        "detail": [{"field": r.field, "reason": r.reason, "error": r.code} for r in refused],
    }
    if first.kind is Invalid:  # 422: message "<field>: <reason>..."; detail lists every refused record
        return Invalid(first.field, f"{first.reason}{more}; nothing was recorded", code=first.code, details=details)
    return Conflict(f"{first.field}: {first.reason}{more}; nothing was recorded", code=first.code, details=details)
