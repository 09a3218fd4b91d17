"""A learner's calendar feed (iCalendar, RFC 5545): the teaching blocks of every session the learner holds a seat
in (``CONFIRMED``) or waits for (``TENTATIVE``, with the waitlist position), in each session's own time zone, from
enrollment's own view of the sessions. Cancelled enrollments and sessions leave the feed; a learner with none gets
an empty calendar."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Response

from shared.auth import AUTH_RESPONSES, READER, require
from shared.calendar_feed import MEDIA_TYPE, Block, response
from shared.store.port import Store

from ..adapters.rosters import ROSTERS
from ..adapters.sessions import DETAILS, SESSIONS

def printable(text: str) -> str:
    """An id from the URL as the calendar's name: control characters (a line break would end the iCalendar
    content line: found by the schemathesis run as a 500) become spaces."""
    return "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)


ICS = {200: {"content": {MEDIA_TYPE: {}}, "description": "an iCalendar (RFC 5545) feed"}}


def _holding(roster: dict[str, Any], learner_id: str) -> dict[str, Any] | None:
    for part in ("enrolled", "waitlist"):
        for entry in roster[part]:
            if entry["learner_id"] == learner_id:
                return entry
    return None


def _blocks(session: dict[str, Any], details: dict[str, Any] | None, entry: dict[str, Any]) -> list[Block]:
    title = f"{details['course_code']}: {details['title']}" if details else f"Session {session['session_id']}"
    waiting = entry["status"] == "waitlisted"
    if waiting:
        title += f" (waitlist, position {entry.get('position')})"
    place = None
    if details:
        place = details.get("venue_id") or (f"virtual room {details['virtual_room_id']}"
                                            if details.get("virtual_room_id") else None)
    slots = session.get("slots") or []
    return [
        Block(
            uid=f"{entry['enrollment_id']}-{n}@enrollment.ilt",
            summary=title + (f" (day {n} of {len(slots)})" if len(slots) > 1 else ""),
            starts_at=datetime.fromisoformat(slot["starts_at"]),
            ends_at=datetime.fromisoformat(slot["ends_at"]),
            time_zone=session["time_zone"],
            location=place,
            description=f"Session {session['session_id']}, enrollment {entry['enrollment_id']} ({entry['status']}).",
            status="TENTATIVE" if waiting else "CONFIRMED",
        )
        for n, slot in enumerate(slots, start=1)
    ]


def router(store: Store) -> APIRouter:
    api = APIRouter(tags=["calendars"], dependencies=[Depends(require(READER))], responses=AUTH_RESPONSES)

    @api.get("/calendars/learners/{learner_id}.ics", response_class=Response, responses=ICS)
    async def learner_calendar(learner_id: str) -> Response:
        """iCalendar feed of a learner's sessions (seats confirmed, waitlist places tentative), in each session's time zone."""
        blocks: list[Block] = []
        for session_id, roster in await store.scan(ROSTERS):
            entry = _holding(roster, learner_id)
            if entry is None or roster.get("session_status") == "cancelled":
                continue
            session = await store.get(SESSIONS, session_id)
            if session is None or not session.get("time_zone"):
                continue
            blocks += _blocks(session, await store.get(DETAILS, session_id), entry)
        return response(f"Training: {printable(learner_id)}", blocks)

    return api
