"""Calendar feeds of the scheduling service (iCalendar, RFC 5545): the teaching blocks of every scheduled session
of one instructor or one venue, in each session's own time zone. Cancelled sessions leave the feed (a calendar
client that refreshes drops them); an id with no sessions gets an empty calendar."""

from __future__ import annotations

import unicodedata
from typing import Any

from fastapi import APIRouter, Depends, Response

from shared.auth import AUTH_RESPONSES, READER, require
from shared.calendar_feed import MEDIA_TYPE, Block, response
from shared.store.port import Store

from ..adapters.calendar import BOOKINGS
from ..application.handlers import SESSIONS

def printable(text: str) -> str:
    """An id from the URL as the calendar's name: control characters (a line break would end the iCalendar
    content line: found by the schemathesis run as a 500) become spaces."""
    return "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)


ICS = {200: {"content": {MEDIA_TYPE: {}}, "description": "an iCalendar (RFC 5545) feed"}}


def _blocks(session: dict[str, Any]) -> list[Block]:
    from datetime import datetime

    place = session.get("venue_id") or (f"virtual room {session['virtual_room_id']}"
                                        if session.get("virtual_room_id") else None)
    instructors = ", ".join(session.get("instructor_ids") or []) or "none"
    slots = session["slots"]
    return [
        Block(
            uid=f"{session['session_id']}-{n}@scheduling.ilt",
            summary=f"{session['course_code']}: {session['title']}" + (f" (day {n} of {len(slots)})"
                                                                       if len(slots) > 1 else ""),
            starts_at=datetime.fromisoformat(slot["starts_at"]),
            ends_at=datetime.fromisoformat(slot["ends_at"]),
            time_zone=session["time_zone"],
            location=place,
            description=f"Session {session['session_id']} ({session['delivery']}); instructors: {instructors}; "
                        f"capacity {session['capacity']}.",
            sequence=int(session.get("version", 0)),
        )
        for n, slot in enumerate(slots, start=1)
    ]


async def _feed(store: Store, resource: str, name: str) -> Response:
    held = await store.get(BOOKINGS, resource) or {"bookings": []}
    blocks: list[Block] = []
    for session_id in dict.fromkeys(b["session_id"] for b in held["bookings"]):
        session = await store.get(SESSIONS, session_id)
        if session is not None and session.get("status") != "cancelled":
            blocks += _blocks(session)
    return response(name, blocks)


def router(store: Store) -> APIRouter:
    api = APIRouter(tags=["calendars"], dependencies=[Depends(require(READER))], responses=AUTH_RESPONSES)

    @api.get("/calendars/instructors/{instructor_id}.ics", response_class=Response, responses=ICS)
    async def instructor_calendar(instructor_id: str) -> Response:
        """iCalendar feed of an instructor's teaching blocks (scheduled sessions, in each session's time zone)."""
        return await _feed(store, f"instructor:{instructor_id}", f"Teaching: {printable(instructor_id)}")

    @api.get("/calendars/venues/{venue_id}.ics", response_class=Response, responses=ICS)
    async def venue_calendar(venue_id: str) -> Response:
        """iCalendar feed of a venue's bookings (scheduled sessions, in each session's time zone)."""
        return await _feed(store, f"venue:{venue_id}", f"Venue: {printable(venue_id)}")

    return api
