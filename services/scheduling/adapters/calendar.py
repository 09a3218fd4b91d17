"""Where the bookings of every resource are kept, inside the scheduling store (same transaction as the events)."""

from __future__ import annotations

from datetime import datetime

from shared.store.port import UnitOfWork

from ..domain.model import Booking

BOOKINGS = "bookings"  # one document per resource: {"bookings": [{session_id, starts_at, ends_at}]}


async def bookings_for(uow: UnitOfWork, resources: list[str]) -> list[Booking]:
    out = []
    for resource in set(resources):
        doc = await uow.get(BOOKINGS, resource) or {"bookings": []}
        out += [
            Booking(resource, b["session_id"], datetime.fromisoformat(b["starts_at"]),
                    datetime.fromisoformat(b["ends_at"]))
            for b in doc["bookings"]
        ]
    return out


async def replace_bookings(uow: UnitOfWork, session_id: str, old: list[Booking], new: list[Booking]) -> None:
    """Release the session's old bookings and hold the new ones."""
    touched = {b.resource for b in old} | {b.resource for b in new}
    for resource in touched:
        doc = await uow.get(BOOKINGS, resource) or {"bookings": []}
        kept = [b for b in doc["bookings"] if b["session_id"] != session_id]
        kept += [
            {"session_id": session_id, "starts_at": b.starts_at.isoformat(), "ends_at": b.ends_at.isoformat()}
            for b in new if b.resource == resource
        ]
        if kept:
            await uow.put(BOOKINGS, resource, {"bookings": kept})
        else:
            await uow.delete(BOOKINGS, resource)
