"""The session aggregate and the booking rules. Pure: no storage, no transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from shared.contracts.scheduling import SessionCancelled, SessionPlan, SessionRescheduled, SessionScheduled, TimeSlot
from shared.errors import Conflict, Invalid

MAX_SESSION_DAYS = 31


@dataclass(frozen=True)
class Booking:
    """One resource held by one session for one time slot."""

    resource: str  # "instructor:<id>", "venue:<id>", "room:<id>", "equipment:<id>"
    session_id: str
    starts_at: datetime
    ends_at: datetime


def resources_of(plan: SessionPlan) -> list[str]:
    out: list[str] = []
    if plan.venue_id:
        out.append(f"venue:{plan.venue_id}")
    if plan.virtual_room_id:
        out.append(f"room:{plan.virtual_room_id}")
    out += [f"instructor:{i}" for i in plan.instructor_ids]
    out += [f"equipment:{e}" for e in plan.equipment_ids]
    return out


def bookings_of(session_id: str, plan: SessionPlan) -> list[Booking]:
    return [
        Booking(resource, session_id, slot.starts_at, slot.ends_at)
        for resource in resources_of(plan)
        for slot in plan.slots
    ]


def check_plan(plan: SessionPlan) -> None:
    """Rules a plan must satisfy on its own (before looking at other sessions)."""
    if plan.delivery == "classroom" and not plan.venue_id:
        raise Invalid("venue_id", "a classroom session needs a venue")
    if plan.delivery == "virtual" and not plan.virtual_room_id:
        raise Invalid("virtual_room_id", "a virtual session needs a virtual room")
    for earlier, later in zip(plan.slots, plan.slots[1:], strict=False):
        if later.starts_at < earlier.ends_at:
            raise Invalid("slots", "time slots must be in time order and must not overlap")
    if (plan.ends_at - plan.starts_at).days > MAX_SESSION_DAYS:
        raise Invalid("slots", f"a session spans at most {MAX_SESSION_DAYS} days")
    for name, ids in (("instructor_ids", plan.instructor_ids), ("equipment_ids", plan.equipment_ids)):
        if len(set(ids)) != len(ids):
            raise Invalid(name, "lists the same id twice")


def find_conflicts(wanted: list[Booking], existing: list[Booking]) -> list[dict[str, str]]:
    """Every pair where the same resource is held by another session at an overlapping time."""
    conflicts = []
    for w in wanted:
        for e in existing:
            if e.resource == w.resource and e.session_id != w.session_id and \
                    w.starts_at < e.ends_at and e.starts_at < w.ends_at:
                kind, _, rid = w.resource.partition(":")
                conflicts.append({
                    "resource_type": kind,
                    "resource_id": rid,
                    "conflicting_session_id": e.session_id,
                    "conflicting_starts_at": e.starts_at.isoformat(),
                    "conflicting_ends_at": e.ends_at.isoformat(),
                })
    unique = {tuple(sorted(c.items())): c for c in conflicts}
    return list(unique.values())


def raise_if_conflicts(conflicts: list[dict[str, str]]) -> None:
    if conflicts:
        first = conflicts[0]
        raise Conflict(
            f"{first['resource_type']} {first['resource_id']} is already booked by session "
            f"{first['conflicting_session_id']} at an overlapping time",
            code="booking_conflict",
            details={"conflicts": conflicts},
        )


@dataclass
class Session:
    """State of one session, rebuilt from its events."""

    session_id: str
    version: int = 0
    plan: SessionPlan | None = None
    cancelled: bool = False
    history: list[str] = field(default_factory=list)

    @classmethod
    def from_events(cls, session_id: str, events: list[object]) -> Session:
        session = cls(session_id)
        for event in events:
            session.apply(event)
        return session

    def apply(self, event: object) -> None:
        self.version += 1
        if isinstance(event, SessionScheduled | SessionRescheduled):
            self.plan = SessionPlan.model_validate(event.model_dump(include=set(SessionPlan.model_fields)))
        elif isinstance(event, SessionCancelled):
            self.cancelled = True

    @property
    def exists(self) -> bool:
        return self.plan is not None

    def schedule(self, plan: SessionPlan, now: datetime, backdated: bool) -> SessionScheduled:
        check_plan(plan)
        if plan.starts_at <= now:
            raise Invalid("slots", "the session would start in the past (an import sets as_of and backdated)")
        return SessionScheduled(session_id=self.session_id, occurred_at=now, backdated=backdated,
                                **plan.model_dump())

    def reschedule(self, plan: SessionPlan, now: datetime, backdated: bool) -> SessionRescheduled | None:
        """The rescheduling, or None when the plan is the one in force (a repeated or empty reschedule changes
        nothing and publishes nothing)."""
        self._must_be_open(now)
        if plan == self.plan:
            return None
        check_plan(plan)
        if plan.starts_at <= now:
            raise Invalid("slots", "a session cannot be moved into the past")
        return SessionRescheduled(session_id=self.session_id, occurred_at=now, backdated=backdated,
                                  **plan.model_dump())

    def cancel(self, reason: str, now: datetime, backdated: bool) -> SessionCancelled | None:
        if self.cancelled:
            return None  # cancelling twice changes nothing
        assert self.plan is not None
        if self.plan.ends_at <= now:
            raise Conflict("the session is over and cannot be cancelled", code="session_finished")
        return SessionCancelled(session_id=self.session_id, occurred_at=now, reason=reason, backdated=backdated)

    def _must_be_open(self, now: datetime) -> None:
        assert self.plan is not None
        if self.cancelled:
            raise Conflict("the session is cancelled", code="session_cancelled")
        if self.plan.ends_at <= now:
            raise Conflict("the session is over", code="session_finished")


def slots_equal(a: list[TimeSlot], b: list[TimeSlot]) -> bool:
    return [(s.starts_at, s.ends_at) for s in a] == [(s.starts_at, s.ends_at) for s in b]
