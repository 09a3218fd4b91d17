"""Events published by the enrollment service on ``ilt.enrollment.events`` (key: session id).

Learners are identified by an opaque ``learner_id`` issued by the client system; no names or e-mail addresses
travel on the bus.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import IntegrationEvent, published
from .topics import ENROLLMENT_EVENTS

SOURCE = "/ilt/enrollment"
AttendanceStatus = Literal["attended", "partial", "no_show"]


class _SessionEvent(IntegrationEvent):
    topic: ClassVar[str] = ENROLLMENT_EVENTS
    source: ClassVar[str] = SOURCE

    enrollment_id: str
    session_id: str
    learner_id: str
    backdated: bool = False

    def aggregate_id(self) -> str:
        return self.session_id


@published
class LearnerEnrolled(_SessionEvent):
    """A learner holds a seat. ``promoted_from_waitlist`` says the seat came from the waitlist."""

    event_type: ClassVar[str] = "ilt.enrollment.learner-enrolled.v1"
    promoted_from_waitlist: bool = False


@published
class LearnerWaitlisted(_SessionEvent):
    """The session was full: the learner waits at ``position`` (1 = next to be promoted)."""

    event_type: ClassVar[str] = "ilt.enrollment.learner-waitlisted.v1"
    position: int = Field(ge=1)


@published
class EnrollmentCancelled(_SessionEvent):
    event_type: ClassVar[str] = "ilt.enrollment.enrollment-cancelled.v1"
    previous_status: Literal["enrolled", "waitlisted"]
    reason: Literal["learner_request", "session_cancelled"] = "learner_request"


@published
class AttendanceRecorded(_SessionEvent):
    """Attendance of an enrolled learner. A correction carries the status it replaces."""

    event_type: ClassVar[str] = "ilt.enrollment.attendance-recorded.v1"
    status: AttendanceStatus
    previous_status: AttendanceStatus | None = None
