"""Commands the scheduling service takes (HTTP bodies; the same models serve every other entry point)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import Field

from shared.commands import CommandTime
from shared.contracts.requests import (  # the fields the HTTP bodies share with the Kafka requests
    ID_PATTERN,
    CancelSessionFields,
    CostInput,
    PlanFields,
    RescheduleFields,
    SlotInput,
)
from shared.contracts.scheduling import PlannedCost, SessionPlan, TimeSlot
from shared.errors import Invalid

__all__ = ["CancelSession", "CostInput", "PlanFields", "RescheduleSession", "ScheduleSession", "SlotInput", "to_plan"]

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
        default=None, min_length=1, max_length=128, pattern=ID_PATTERN,
        description="Optional id chosen by the client; scheduling the same id with the same plan again is a no-op.",
    )


class RescheduleSession(RescheduleFields, CommandTime):
    """Fields left out keep their current value."""


class CancelSession(CancelSessionFields, CommandTime):
    pass
