"""Commands the scheduling service takes (HTTP bodies; the same models serve every other entry point)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
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
from shared.contracts.base import is_iso_currency
from shared.contracts.scheduling import PlannedCost, SessionPlan, TimeSlot
from shared.errors import Invalid

ID_RE = re.compile(ID_PATTERN)

__all__ = ["CancelSession", "CostInput", "PlanFields", "RescheduleSession", "ScheduleSession", "SlotInput", "to_plan"]

EARLIEST_YEAR, LATEST_YEAR = 1970, 2199  # outside this a date is a typo (and 9999 overflows time zone arithmetic)


def to_plan(fields: PlanFields) -> SessionPlan:
    """The plan in the session's own time zone, or ``Invalid`` naming the field.

    Times without an offset are local wall-clock times of ``time_zone``; a time that does not exist (spring
    forward) or exists twice (fall back) there is refused, unless the offset is given. Times with an offset are
    kept as the same instant, expressed in the session's zone."""
    zone = ZoneInfo(fields.time_zone)
    slots = []
    for n, slot in enumerate(fields.slots):
        start = _localize(slot.starts_at, zone, f"slots.{n}.starts_at")
        end = _localize(slot.ends_at, zone, f"slots.{n}.ends_at")
        if end <= start:
            raise Invalid(f"slots.{n}.ends_at", "must be after starts_at")
        slots.append(TimeSlot(starts_at=start, ends_at=end))
    if fields.delivery == "virtual" and fields.venue_id and fields.virtual_room_id:
        raise Invalid("venue_id", "a virtual session has no venue (leave venue_id out)")
    if fields.delivery == "classroom" and fields.virtual_room_id and fields.venue_id:
        raise Invalid("virtual_room_id", "a classroom session has no virtual room (leave virtual_room_id out)")
    for name, ids in (("instructor_ids", fields.instructor_ids), ("equipment_ids", fields.equipment_ids)):
        for n, value in enumerate(ids):
            if not ID_RE.fullmatch(value) or len(value) > 128:
                raise Invalid(f"{name}.{n}", "must be 1-128 characters: letters, digits and . _ : @ -")
    for n, cost in enumerate(fields.planned_costs):
        if not is_iso_currency(cost.amount.currency):
            raise Invalid(f"planned_costs.{n}.amount.currency", f"{cost.amount.currency!r} is not an ISO 4217 currency")
    return SessionPlan(
        **fields.model_dump(exclude={"slots", "planned_costs"}),
        slots=slots,
        planned_costs=[PlannedCost(**c.model_dump()) for c in fields.planned_costs],
    )


def _localize(value: datetime, zone: ZoneInfo, field: str) -> datetime:
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise Invalid(field, f"must lie between {EARLIEST_YEAR} and {LATEST_YEAR}")
    if value.tzinfo is not None:
        return value.astimezone(zone)
    early, late = value.replace(tzinfo=zone, fold=0), value.replace(tzinfo=zone, fold=1)
    # a wall-clock time skipped by a daylight-saving change does not survive the round trip through UTC
    if early.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != value:
        raise Invalid(field, f"{value.isoformat()} does not exist in {zone.key} (daylight-saving change)")
    if early.utcoffset() != late.utcoffset():
        raise Invalid(field, f"{value.isoformat()} happens twice in {zone.key} (clocks go back): give the UTC offset")
    return early


class ScheduleSession(PlanFields, CommandTime):
    session_id: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=ID_PATTERN,
        description="Optional id chosen by the client; scheduling the same id with the same plan again is a no-op.",
    )


class RescheduleSession(RescheduleFields, CommandTime):
    """Fields left out keep their current value."""


class CancelSession(CancelSessionFields, CommandTime):
    pass
