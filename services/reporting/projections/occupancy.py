"""Occupancy projection: every scheduling and enrollment event updates the document of its session.

One read and one write per event, inside the consumer's transaction. The rollups are not stored: they are computed
at read time from the session documents (a few thousand documents take milliseconds), so they can never drift from
the sessions they summarise.

Rebuilding: the documents derive from the events only. A new reporting store fed from the start of the three
topics (consumer group ``reporting`` reset to the earliest offsets) rebuilds them exactly, whatever the order in
which the topics interleave.
"""

from __future__ import annotations

from typing import Any

from shared.messaging.envelope import Envelope
from shared.store.port import Store, UnitOfWork

from ..adapters.documents import SessionDocuments
from ..domain import occupancy
from ..domain.occupancy import SessionOccupancy


async def apply(uow: UnitOfWork, envelope: Envelope) -> None:
    event = envelope.data
    session = await SessionDocuments.load(uow, occupancy.session_id_of(event))
    session.apply(event)
    await SessionDocuments.save(uow, session)


async def sessions(store: Store, year: int | None = None, course_code: str | None = None,
                   venue: str | None = None) -> list[SessionOccupancy]:
    """Sessions matching the filters, by start time (sessions without a known plan last), then id."""
    found = [s for s in await SessionDocuments.all(store) if occupancy.matches(s, year, course_code, venue)]

    def order(s: SessionOccupancy) -> tuple[Any, ...]:
        start = s.start_time()
        return (start is None, start.timestamp() if start else 0.0, s.session_id)

    return sorted(found, key=order)


async def session(store: Store, session_id: str) -> SessionOccupancy | None:
    return await SessionDocuments.get(store, session_id)
