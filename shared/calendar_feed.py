"""iCalendar (RFC 5545) feeds: one VEVENT per teaching block, in the session's own time zone.

Times are written as local times with ``TZID`` (the session's IANA time zone) and the calendar carries the matching
``VTIMEZONE`` components, so a calendar client shows 09:00 in Berlin as 09:00 Berlin time whatever its own zone,
across daylight-saving changes. ``UID`` is stable per session and block (a refreshed feed updates, not duplicates);
``SEQUENCE`` is the session's version. Used by scheduling (per instructor, per venue) and enrollment (per learner).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from fastapi.responses import Response
from icalendar import Calendar, Event

MEDIA_TYPE = "text/calendar; charset=utf-8"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _text(value: str) -> str:
    """Control characters (a line break in an id or a title) would break the content lines: a space instead."""
    return _CONTROL.sub(" ", value)


@dataclass(frozen=True)
class Block:
    """One teaching block of a session, as a calendar entry."""

    uid: str
    summary: str
    starts_at: datetime
    ends_at: datetime
    time_zone: str
    location: str | None = None
    description: str | None = None
    status: str = "CONFIRMED"  # CONFIRMED, TENTATIVE (e.g. waitlisted) or CANCELLED
    sequence: int = 0


def feed(name: str, blocks: Iterable[Block], product: str = "-//ILT back office//calendar feed//EN") -> bytes:
    calendar = Calendar()
    calendar.add("prodid", product)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", _text(name))
    stamp = datetime.now(UTC).replace(microsecond=0)
    for block in sorted(blocks, key=lambda b: (b.starts_at, b.uid)):
        zone = ZoneInfo(block.time_zone)
        event = Event()
        event.add("uid", _text(block.uid))
        event.add("dtstamp", stamp)
        event.add("dtstart", block.starts_at.astimezone(zone))
        event.add("dtend", block.ends_at.astimezone(zone))
        event.add("summary", _text(block.summary))
        if block.location:
            event.add("location", _text(block.location))
        if block.description:
            event.add("description", _text(block.description))
        event.add("status", block.status)
        event.add("sequence", block.sequence)
        calendar.add_component(event)
    calendar.add_missing_timezones()
    return calendar.to_ical()


def response(name: str, blocks: Iterable[Block]) -> Response:
    return Response(feed(name, blocks), media_type=MEDIA_TYPE)
