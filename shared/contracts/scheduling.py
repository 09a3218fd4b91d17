"""Events published by the scheduling service on ``ilt.scheduling.events`` (key: session id)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .base import IntegrationEvent, Money, TimeZoneName, Timestamp, published
from .topics import SCHEDULING_EVENTS

Delivery = Literal["classroom", "virtual"]
SOURCE = "/ilt/scheduling"


class TimeSlot(BaseModel):
    """One teaching block of a session (a session may span several days)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    starts_at: Timestamp
    ends_at: Timestamp

    @model_validator(mode="after")
    def _ends_after_start(self) -> TimeSlot:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    def overlaps(self, other: TimeSlot) -> bool:
        return self.starts_at < other.ends_at and other.starts_at < self.ends_at


class PlannedCost(BaseModel):
    """A fixed cost planned for a session (venue hire, instructor fee, travel...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: str = Field(min_length=1, max_length=64, examples=["venue_hire"])
    amount: Money
    cost_centre: str = Field(min_length=1, max_length=64, examples=["CC-TRAINING"])


class SessionPlan(BaseModel):
    """What a session is: shared by ``SessionScheduled`` and ``SessionRescheduled``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    course_code: str
    title: str
    delivery: Delivery
    venue_id: str | None = Field(default=None, description="Classroom venue (classroom delivery).")
    virtual_room_id: str | None = Field(default=None, description="Virtual room (virtual delivery).")
    time_zone: TimeZoneName
    slots: list[TimeSlot] = Field(min_length=1, description="Teaching blocks, in time order.")
    instructor_ids: list[str] = Field(default_factory=list)
    equipment_ids: list[str] = Field(default_factory=list)
    capacity: int = Field(gt=0)
    cost_centre: str = Field(description="Cost centre that carries the per-learner costs of the session.")
    planned_costs: list[PlannedCost] = Field(default_factory=list)

    @property
    def starts_at(self) -> Timestamp:
        return self.slots[0].starts_at

    @property
    def ends_at(self) -> Timestamp:
        return self.slots[-1].ends_at


@published
class SessionScheduled(SessionPlan, IntegrationEvent):
    event_type: ClassVar[str] = "ilt.scheduling.session-scheduled.v1"
    topic: ClassVar[str] = SCHEDULING_EVENTS
    source: ClassVar[str] = SOURCE

    session_id: str
    backdated: bool = Field(default=False, description="True when an import recorded this with a past time.")

    def aggregate_id(self) -> str:
        return self.session_id


@published
class SessionRescheduled(SessionPlan, IntegrationEvent):
    """The session's new plan in full (times, place, people, capacity, costs)."""

    event_type: ClassVar[str] = "ilt.scheduling.session-rescheduled.v1"
    topic: ClassVar[str] = SCHEDULING_EVENTS
    source: ClassVar[str] = SOURCE

    session_id: str
    backdated: bool = False

    def aggregate_id(self) -> str:
        return self.session_id


@published
class SessionCancelled(IntegrationEvent):
    event_type: ClassVar[str] = "ilt.scheduling.session-cancelled.v1"
    topic: ClassVar[str] = SCHEDULING_EVENTS
    source: ClassVar[str] = SOURCE

    session_id: str
    reason: str = ""
    backdated: bool = False

    def aggregate_id(self) -> str:
        return self.session_id
