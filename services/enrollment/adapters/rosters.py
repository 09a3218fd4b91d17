"""Roster streams and the documents derived from them: the roster view (GET endpoints) and the index
enrollment id -> session id. Written in the same transaction as the events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.store.port import UnitOfWork

from ..domain.model import Enrollment, Roster, SessionView

ROSTERS = "rosters"  # read model: one document per session
ENROLLMENT_INDEX = "enrollment-index"  # enrollment_id -> {"session_id"}


def stream_of(session_id: str) -> str:
    return f"roster-{session_id}"


async def load_roster(uow: UnitOfWork, session: SessionView) -> Roster:
    recorded = await uow.read_stream(stream_of(session.session_id))
    return Roster.from_events(session, [r.envelope.data for r in recorded])


async def session_of_enrollment(uow: UnitOfWork, enrollment_id: str) -> str | None:
    doc = await uow.get(ENROLLMENT_INDEX, enrollment_id)
    return doc["session_id"] if doc else None


async def index_enrollments(uow: UnitOfWork, session_id: str, enrollment_ids: list[str]) -> None:
    for enrollment_id in enrollment_ids:
        await uow.put(ENROLLMENT_INDEX, enrollment_id, {"session_id": session_id})


def enrollment_view(roster: Roster, enrollment: Enrollment,
                    positions: Mapping[str, int] | None = None) -> dict[str, Any]:
    """One enrollment as the API shows it. ``positions`` (``Roster.positions()``): given when viewing many, so the
    waitlist is not searched once per enrollment."""
    out: dict[str, Any] = {
        "enrollment_id": enrollment.enrollment_id,
        "session_id": roster.session_id,
        "learner_id": enrollment.learner_id,
        "status": enrollment.status,
    }
    if positions is None:
        position = roster.position_of(enrollment.enrollment_id)
    else:
        position = positions.get(enrollment.enrollment_id)
    if position is not None:
        out["position"] = position
    if enrollment.promoted_from_waitlist:
        out["promoted_from_waitlist"] = True
    if enrollment.attendance is not None:
        out["attendance"] = enrollment.attendance
    return out


def roster_view(roster: Roster) -> dict[str, Any]:
    session = roster.session
    positions = roster.positions()
    return {
        "session_id": roster.session_id,
        "session_status": session.status,
        "capacity": session.capacity,
        "starts_at": session.starts_at.isoformat() if session.starts_at else None,
        "ends_at": session.ends_at.isoformat() if session.ends_at else None,
        "time_zone": session.time_zone,
        "enrolled_count": roster.enrolled_count,
        "waitlisted_count": len(roster.waitlist),
        "free_seats": roster.free_seats,
        "version": roster.version,
        "enrolled": [enrollment_view(roster, e, positions) for e in roster.enrolled],
        "waitlist": [enrollment_view(roster, e, positions) for e in roster.waiting()],
        "cancelled": [enrollment_view(roster, e, positions) for e in roster.enrollments.values()
                      if e.status == "cancelled"],
    }


async def put_roster_view(uow: UnitOfWork, roster: Roster) -> dict[str, Any]:
    doc = roster_view(roster)
    await uow.put(ROSTERS, roster.session_id, doc)
    return doc


def find_in_roster_view(doc: dict[str, Any], enrollment_id: str) -> dict[str, Any] | None:
    for part in ("enrolled", "waitlist", "cancelled"):
        for entry in doc[part]:
            if entry["enrollment_id"] == enrollment_id:
                return entry
    return None
