"""Commands the scheduling service takes (HTTP bodies; the same models serve every other entry point)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.commands import CommandTime
from shared.contracts.base import Money, TimeZoneName
from shared.contracts.scheduling import Delivery, PlannedCost, SessionPlan, TimeSlot
from shared.errors import Invalid

MAX_COST = 10_000_000
ID_FIELD = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")


class SlotInput(BaseModel):
    """A teaching block. Times without an offset are local times in the session's time zone."""

    model_config = ConfigDict(extra="forbid")

    starts_at: datetime
    ends_at: datetime


class CostInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: str = Field(min_length=1, max_length=64)
    amount: Money
    cost_centre: str = ID_FIELD

    @field_validator("amount")
    @classmethod
    def _sane(cls, amount: Money) -> Money:
        if amount.amount < 0:
            raise ValueError("a planned cost cannot be negative")
        if amount.amount > MAX_COST:
            raise ValueError(f"a planned cost above {MAX_COST} is not plausible")
        return amount


class PlanFields(BaseModel):
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
    capacity: int = Field(gt=0, le=100_000)
    cost_centre: str = ID_FIELD
    planned_costs: list[CostInput] = Field(default_factory=list, max_length=50)


def to_plan(fields: PlanFields) -> SessionPlan:
    zone = ZoneInfo(fields.time_zone)
    slots = []
    for n, slot in enumerate(fields.slots):
        start, end = (_localize(t, zone) for t in (slot.starts_at, slot.ends_at))
        if end <= start:
            raise Invalid(f"slots.{n}.ends_at", "must be after starts_at")
        slots.append(TimeSlot(starts_at=start, ends_at=end))
    return SessionPlan(
        **fields.model_dump(exclude={"slots", "planned_costs"}),
        slots=slots,
        planned_costs=[PlannedCost(**c.model_dump()) for c in fields.planned_costs],
    )


def _localize(value: datetime, zone: ZoneInfo) -> datetime:
    if value.tzinfo is not None:
        return value
    local = value.replace(tzinfo=zone)
    # a wall-clock time skipped by a daylight-saving change does not survive the round trip through UTC
    from datetime import UTC

    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != value:
        raise Invalid("slots", f"{value.isoformat()} does not exist in {zone.key} (daylight-saving change)")
    return local


class ScheduleSession(PlanFields, CommandTime):
    session_id: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$",
        description="Optional id chosen by the client; scheduling the same id with the same plan again is a no-op.",
    )


class RescheduleSession(CommandTime):
    """Fields left out keep their current value."""

    model_config = ConfigDict(extra="forbid")

    delivery: Delivery | None = None
    venue_id: str | None = Field(default=None, min_length=1, max_length=128)
    virtual_room_id: str | None = Field(default=None, min_length=1, max_length=128)
    time_zone: TimeZoneName | None = None
    slots: list[SlotInput] | None = Field(default=None, min_length=1, max_length=62)
    instructor_ids: list[str] | None = Field(default=None, max_length=20)
    equipment_ids: list[str] | None = Field(default=None, max_length=50)
    capacity: int | None = Field(default=None, gt=0, le=100_000)
    planned_costs: list[CostInput] | None = Field(default=None, max_length=50)


class CancelSession(CommandTime):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500)
