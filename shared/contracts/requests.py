"""Requests other systems send us over Kafka, and the outcome every request gets.

An HR portal, an LMS or an ERP publishes a request as a CloudEvent (binary or structured mode) on the inbound topic
of the service that takes it (``ilt.<service>.requests``). The service runs it through the same command handler as
its HTTP API, in the consumer's transaction, and publishes on its outbound topic (``ilt.<service>.events``), with
the request's CloudEvents id as causation id (and its correlation id kept):

- the events the command caused (e.g. ``LearnerEnrolled``), then
- exactly one outcome: ``ilt.<service>.request-accepted.v1`` (``changed`` false when there was nothing to do, e.g.
  the learner already held an enrollment) or ``ilt.<service>.request-rejected.v1`` (a well-formed request the rules
  refused: the same error code, message and details as the HTTP answer; a rejected request changes nothing else).

The outcome is keyed like the events it follows (the session id, or the cost centre), so a reader of one
partition sees the events before the outcome. A malformed request (not a CloudEvent, unknown type, a payload that
does not fit the schema below) goes to the service's dead-letter topic with the reason in its headers. A request
delivered twice (same ``id``) has its effect once. Request ids must be unique: use a UUID.

The request bodies share their fields with the HTTP command bodies (the command models of the services are built
from the ``*Fields`` classes here), so both paths accept exactly the same input.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from .base import IntegrationEvent, IntegrationRequest, Money, TimeZoneName, published
from .enrollment import SOURCE as ENROLLMENT_SOURCE
from .enrollment import AttendanceStatus
from .finance import PERIOD_PATTERN, PerLearnerRate
from .finance import SOURCE as FINANCE_SOURCE
from .scheduling import SOURCE as SCHEDULING_SOURCE
from .scheduling import Delivery
from .topics import (
    ENROLLMENT_EVENTS,
    ENROLLMENT_REQUESTS,
    FINANCE_EVENTS,
    FINANCE_REQUESTS,
    SCHEDULING_EVENTS,
    SCHEDULING_REQUESTS,
)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
PATH_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$"
MAX_COST = 10_000_000

SessionId = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN, examples=["swc-2030-berlin-1"])]
EnrollmentId = Annotated[str, Field(min_length=1, max_length=128, examples=["3f6c2a4e-1d2b-4c8e-9a57-0b1e2d3c4f5a"])]
CostCentreId = Annotated[str, Field(min_length=1, max_length=128, pattern=PATH_ID_PATTERN, examples=["CC-TRAINING"])]
LearnerId = Annotated[str, Field(
    min_length=1, max_length=128, pattern=PATH_ID_PATTERN,
    description="Opaque learner id issued by the client system (no names or e-mail addresses).",
    examples=["learner-0042"],
)]
LocalOrAwareTime = Annotated[datetime, WithJsonSchema({
    "type": "string",
    "description": "ISO 8601 date and time; without an offset it is a local time in the session's time_zone.",
    "examples": ["2030-04-01T09:00", "2030-04-01T09:00:00+02:00"],
})]


class BusinessTime(BaseModel):
    """When a command or request happened in the business (historical imports); everyone else leaves it out."""

    as_of: AwareDatetime | None = Field(
        default=None,
        description="When this command happened in the business. Rules that depend on 'now' use it. "
        "A time in the past is only accepted with backdated=true (historical imports).",
    )
    backdated: bool = Field(default=False, description="Declares a historical import that back-dates as_of.")


# scheduling -----------------------------------------------------------------------------------------------------


class SlotInput(BaseModel):
    """A teaching block. Times without an offset are local times in the session's time zone."""

    model_config = ConfigDict(extra="forbid")

    starts_at: LocalOrAwareTime
    ends_at: LocalOrAwareTime


class CostInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: str = Field(min_length=1, max_length=64, examples=["venue_hire"])
    amount: Money
    cost_centre: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN, examples=["CC-TRAINING"])

    @field_validator("amount")
    @classmethod
    def _sane(cls, amount: Money) -> Money:
        if amount.amount < 0:
            raise ValueError("a planned cost cannot be negative")
        if amount.amount > MAX_COST:
            raise ValueError(f"a planned cost above {MAX_COST} is not plausible")
        return amount


class PlanFields(BaseModel):
    """A session's plan as a client states it."""

    model_config = ConfigDict(extra="forbid")

    course_code: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=300)
    delivery: Delivery
    venue_id: str | None = Field(default=None, min_length=1, max_length=128)
    virtual_room_id: str | None = Field(default=None, min_length=1, max_length=128)
    time_zone: TimeZoneName
    slots: list[SlotInput] = Field(min_length=1, max_length=62)
    instructor_ids: list[str] = Field(default_factory=list, max_length=20)
    equipment_ids: list[str] = Field(default_factory=list, max_length=50)
    capacity: int = Field(gt=0, le=100_000, strict=True)
    cost_centre: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN, examples=["CC-TRAINING"])
    planned_costs: list[CostInput] = Field(default_factory=list, max_length=50)


class RescheduleFields(BaseModel):
    """Fields left out keep their current value."""

    model_config = ConfigDict(extra="forbid")

    delivery: Delivery | None = None
    venue_id: str | None = Field(default=None, min_length=1, max_length=128)
    virtual_room_id: str | None = Field(default=None, min_length=1, max_length=128)
    time_zone: TimeZoneName | None = None
    slots: list[SlotInput] | None = Field(default=None, min_length=1, max_length=62)
    instructor_ids: list[str] | None = Field(default=None, max_length=20)
    equipment_ids: list[str] | None = Field(default=None, max_length=50)
    capacity: int | None = Field(default=None, gt=0, le=100_000, strict=True)
    planned_costs: list[CostInput] | None = Field(default=None, max_length=50)


class CancelSessionFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500)


@published
class ScheduleSessionRequested(PlanFields, BusinessTime, IntegrationRequest):
    """Schedule a session (as ``POST /sessions``). The sender chooses the session id; the same id with the same
    plan again changes nothing (accepted, ``changed`` false); with another plan it is rejected (session_exists)."""

    event_type: ClassVar[str] = "ilt.scheduling.schedule-session-requested.v1"
    topic: ClassVar[str] = SCHEDULING_REQUESTS

    session_id: SessionId

    def aggregate_id(self) -> str:
        return self.session_id


@published
class RescheduleSessionRequested(RescheduleFields, BusinessTime, IntegrationRequest):
    """Change a session's plan (as ``POST /sessions/{id}/reschedule``); same booking-conflict rules."""

    event_type: ClassVar[str] = "ilt.scheduling.reschedule-session-requested.v1"
    topic: ClassVar[str] = SCHEDULING_REQUESTS

    session_id: SessionId

    def aggregate_id(self) -> str:
        return self.session_id


@published
class CancelSessionRequested(CancelSessionFields, BusinessTime, IntegrationRequest):
    """Cancel a session (as ``POST /sessions/{id}/cancel``)."""

    event_type: ClassVar[str] = "ilt.scheduling.cancel-session-requested.v1"
    topic: ClassVar[str] = SCHEDULING_REQUESTS

    session_id: SessionId

    def aggregate_id(self) -> str:
        return self.session_id


# enrollment -----------------------------------------------------------------------------------------------------


class EnrollLearnerFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learner_id: LearnerId


class RecordAttendanceFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: AttendanceStatus


@published
class EnrollLearnerRequested(EnrollLearnerFields, BusinessTime, IntegrationRequest):
    """Enroll a learner (as ``POST /sessions/{id}/enrollments``): a seat while there is one, else the waitlist.

    A session enrollment has not heard of (yet) is rejected with ``unknown_session`` and ``retryable`` true:
    send the request again (with a new id) a little later."""

    event_type: ClassVar[str] = "ilt.enrollment.enroll-learner-requested.v1"
    topic: ClassVar[str] = ENROLLMENT_REQUESTS

    session_id: SessionId

    def aggregate_id(self) -> str:
        return self.session_id


@published
class CancelEnrollmentRequested(BusinessTime, IntegrationRequest):
    """Cancel an enrollment (as ``POST /enrollments/{id}/cancel``); a freed seat promotes the first waiting learner."""

    event_type: ClassVar[str] = "ilt.enrollment.cancel-enrollment-requested.v1"
    topic: ClassVar[str] = ENROLLMENT_REQUESTS

    enrollment_id: EnrollmentId

    def aggregate_id(self) -> str:
        return self.enrollment_id


@published
class RecordAttendanceRequested(RecordAttendanceFields, BusinessTime, IntegrationRequest):
    """Record (or correct) an enrolled learner's attendance (as ``POST /enrollments/{id}/attendance``)."""

    event_type: ClassVar[str] = "ilt.enrollment.record-attendance-requested.v1"
    topic: ClassVar[str] = ENROLLMENT_REQUESTS

    enrollment_id: EnrollmentId

    def aggregate_id(self) -> str:
        return self.enrollment_id


# finance --------------------------------------------------------------------------------------------------------

PERIOD_FIELD = Field(pattern=PERIOD_PATTERN, description="Calendar year, YYYY.", examples=["2030"])


class AllocateBudgetFields(BaseModel):
    """Add money to a cost centre's budget for a period. The first allocation fixes the currency.

    With ``allocation_id`` (chosen by the client) the allocation is idempotent: the same id with the same content
    again returns the allocation made the first time and adds nothing; the same id with other content is a
    conflict. Without it every request is a new allocation."""

    model_config = ConfigDict(extra="forbid")

    allocation_id: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=PATH_ID_PATTERN,
        description="Client-chosen id that makes a retry safe: the same id and content again allocates nothing "
        "more (200 with the first allocation); the same id with other content is 409 allocation_exists.",
        examples=["budget-CC-1-2030"],
    )
    cost_centre: CostCentreId
    period: str = PERIOD_FIELD
    amount: Money


class SetPerLearnerRatesFields(BaseModel):
    """Replace the per-learner rates of a cost centre (applied to enrollments processed from now on)."""

    model_config = ConfigDict(extra="forbid")

    rates: list[PerLearnerRate] = Field(max_length=50)


class RecordCostFields(BaseModel):
    """An invoice (actual cost). Negative amounts are credit notes and need ``credit_note: true``."""

    model_config = ConfigDict(extra="forbid")

    invoice_ref: str = Field(min_length=1, max_length=128, pattern=PATH_ID_PATTERN)
    cost_centre: CostCentreId
    period: str = PERIOD_FIELD
    category: str = Field(min_length=1, max_length=64)
    amount: Money
    session_id: str | None = Field(default=None, min_length=1, max_length=128)
    credit_note: bool = Field(default=False, description="Declares a negative amount as a credit note.")


@published
class AllocateBudgetRequested(AllocateBudgetFields, BusinessTime, IntegrationRequest):
    """Allocate budget (as ``POST /budgets``), e.g. from an ERP's budget planning."""

    event_type: ClassVar[str] = "ilt.finance.allocate-budget-requested.v1"
    topic: ClassVar[str] = FINANCE_REQUESTS

    def aggregate_id(self) -> str:
        return self.cost_centre


@published
class SetPerLearnerRatesRequested(SetPerLearnerRatesFields, BusinessTime, IntegrationRequest):
    """Set a cost centre's per-learner rates (as ``PUT /cost-centres/{id}/per-learner-rates``)."""

    event_type: ClassVar[str] = "ilt.finance.set-per-learner-rates-requested.v1"
    topic: ClassVar[str] = FINANCE_REQUESTS

    cost_centre: CostCentreId

    def aggregate_id(self) -> str:
        return self.cost_centre


@published
class RecordCostRequested(RecordCostFields, BusinessTime, IntegrationRequest):
    """Record an actual cost (as ``POST /costs``): an invoice or credit note from an ERP; the same invoice_ref
    with the same content again changes nothing."""

    event_type: ClassVar[str] = "ilt.finance.record-cost-requested.v1"
    topic: ClassVar[str] = FINANCE_REQUESTS

    def aggregate_id(self) -> str:
        return self.session_id or self.cost_centre


# outcomes -------------------------------------------------------------------------------------------------------


class RequestOutcome(IntegrationEvent):
    """What became of one request (base of the accepted and rejected events)."""

    request_id: str = Field(description="The request's CloudEvents id (also the causation id of this event).")
    request_type: str = Field(description="The request's CloudEvents type.")
    request_source: str = Field(description="The request's CloudEvents source: the sender.")
    subject: str = Field(description="What the request concerned, as the Kafka key: the session id (scheduling, "
                         "enrollment; the enrollment id when no session was found), or the cost centre (finance).")

    def aggregate_id(self) -> str:
        return self.subject


class RequestAccepted(RequestOutcome):
    changed: bool = Field(description="False when there was nothing to do (the same request's effect was already "
                          "there, e.g. the learner already held an enrollment).")
    result: dict[str, Any] = Field(default_factory=dict,
                                   description="What the HTTP API answers to the same command (e.g. the enrollment).")


class RequestRejected(RequestOutcome):
    error: str = Field(description="Error code, as in the HTTP API's error body (e.g. unknown_session, "
                       "booking_conflict, session_cancelled, session_finished, invalid).",
                       examples=["booking_conflict"])
    message: str = Field(description="Human-readable reason.")
    retryable: bool = Field(default=False, description="True when the same request may succeed later "
                            "(e.g. the session is not known to enrollment yet): send it again with a new id.")
    details: dict[str, Any] = Field(default_factory=dict, description="The other fields of the HTTP error body "
                                    "(e.g. conflicts, detail: [{field, reason}]).")


@published
class SchedulingRequestAccepted(RequestAccepted):
    """A request on ``ilt.scheduling.requests`` was carried out (its events precede this one)."""

    event_type: ClassVar[str] = "ilt.scheduling.request-accepted.v1"
    topic: ClassVar[str] = SCHEDULING_EVENTS
    source: ClassVar[str] = SCHEDULING_SOURCE


@published
class SchedulingRequestRejected(RequestRejected):
    """A request on ``ilt.scheduling.requests`` was refused; nothing was changed."""

    event_type: ClassVar[str] = "ilt.scheduling.request-rejected.v1"
    topic: ClassVar[str] = SCHEDULING_EVENTS
    source: ClassVar[str] = SCHEDULING_SOURCE


@published
class EnrollmentRequestAccepted(RequestAccepted):
    """A request on ``ilt.enrollment.requests`` was carried out (its events precede this one)."""

    event_type: ClassVar[str] = "ilt.enrollment.request-accepted.v1"
    topic: ClassVar[str] = ENROLLMENT_EVENTS
    source: ClassVar[str] = ENROLLMENT_SOURCE


@published
class EnrollmentRequestRejected(RequestRejected):
    """A request on ``ilt.enrollment.requests`` was refused; nothing was changed."""

    event_type: ClassVar[str] = "ilt.enrollment.request-rejected.v1"
    topic: ClassVar[str] = ENROLLMENT_EVENTS
    source: ClassVar[str] = ENROLLMENT_SOURCE


@published
class FinanceRequestAccepted(RequestAccepted):
    """A request on ``ilt.finance.requests`` was carried out (its events precede this one)."""

    event_type: ClassVar[str] = "ilt.finance.request-accepted.v1"
    topic: ClassVar[str] = FINANCE_EVENTS
    source: ClassVar[str] = FINANCE_SOURCE


@published
class FinanceRequestRejected(RequestRejected):
    """A request on ``ilt.finance.requests`` was refused; nothing was changed."""

    event_type: ClassVar[str] = "ilt.finance.request-rejected.v1"
    topic: ClassVar[str] = FINANCE_EVENTS
    source: ClassVar[str] = FINANCE_SOURCE


OUTCOMES: dict[str, tuple[type[RequestAccepted], type[RequestRejected]]] = {
    SCHEDULING_REQUESTS: (SchedulingRequestAccepted, SchedulingRequestRejected),
    ENROLLMENT_REQUESTS: (EnrollmentRequestAccepted, EnrollmentRequestRejected),
    FINANCE_REQUESTS: (FinanceRequestAccepted, FinanceRequestRejected),
}
"""Inbound topic -> the outcome events of its requests."""
