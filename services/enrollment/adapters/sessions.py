"""Enrollment's own view of sessions (one document per session), kept from scheduling's events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.store.port import Store, UnitOfWork

from ..domain.model import SessionView

SESSIONS = "sessions"  # {session_id, status, capacity, time_zone, slots: [{starts_at, ends_at}], starts_at, ends_at}


def to_document(view: SessionView) -> dict[str, Any]:
    return {
        "session_id": view.session_id,
        "status": view.status,
        "capacity": view.capacity,
        "time_zone": view.time_zone,
        "slots": [{"starts_at": s.isoformat(), "ends_at": e.isoformat()} for s, e in view.slots],
        "starts_at": view.starts_at.isoformat() if view.starts_at else None,
        "ends_at": view.ends_at.isoformat() if view.ends_at else None,
    }


def from_document(doc: dict[str, Any]) -> SessionView:
    return SessionView(
        session_id=doc["session_id"],
        capacity=doc["capacity"],
        time_zone=doc.get("time_zone"),
        slots=tuple((datetime.fromisoformat(s["starts_at"]), datetime.fromisoformat(s["ends_at"]))
                    for s in doc.get("slots", [])),
        cancelled=doc["status"] == "cancelled",
    )


async def get_session(uow: UnitOfWork, session_id: str) -> SessionView | None:
    doc = await uow.get(SESSIONS, session_id)
    return from_document(doc) if doc is not None else None


async def read_session(store: Store, session_id: str) -> SessionView | None:
    """Outside a transaction (committed data only)."""
    doc = await store.get(SESSIONS, session_id)
    return from_document(doc) if doc is not None else None


async def put_session(uow: UnitOfWork, view: SessionView) -> None:
    await uow.put(SESSIONS, view.session_id, to_document(view))


DETAILS = "session-details"  # {course_code, title, delivery, venue_id, virtual_room_id}: for the learners' calendars


async def put_details(uow: UnitOfWork, session_id: str, plan: Any) -> None:
    """What a learner's calendar shows of a session besides its times (kept from scheduling's events)."""
    await uow.put(DETAILS, session_id, {
        "course_code": plan.course_code, "title": plan.title, "delivery": plan.delivery,
        "venue_id": plan.venue_id, "virtual_room_id": plan.virtual_room_id,
    })
