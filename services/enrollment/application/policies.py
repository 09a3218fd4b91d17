"""Handlers of scheduling's events: enrollment keeps its own view of every session and reacts to changes.

Each runs inside the consumer's transaction (inbox claim, events, outbox, documents together). Events they
produce are caused by the scheduling event (same correlation id, causation id = its event id).
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from shared.contracts.scheduling import SessionCancelled, SessionRescheduled, SessionScheduled
from shared.messaging.envelope import Envelope
from shared.store.port import UnitOfWork

from ..adapters.rosters import load_roster
from ..adapters.sessions import get_session, put_details, put_session
from ..domain.model import SessionView
from .handlers import save

log = structlog.get_logger()


async def on_session_planned(uow: UnitOfWork, envelope: Envelope) -> None:
    """SessionScheduled / SessionRescheduled: store the session's plan; seats a larger capacity adds go to the
    waitlist, first come first served. A smaller capacity bumps nobody (see ``Roster.session_changed``)."""
    event = envelope.data
    assert isinstance(event, SessionScheduled | SessionRescheduled)
    known = await get_session(uow, event.session_id)
    # a cancelled session stays cancelled whatever plan arrives after
    view = SessionView.from_plan(event.session_id, event, cancelled=known is not None and known.cancelled)
    await put_session(uow, view)
    await put_details(uow, event.session_id, event)
    roster = await load_roster(uow, view)
    expected = roster.version
    promoted = roster.session_changed(view, event.occurred_at, event.backdated)
    await save(uow, roster, expected, [envelope.caused(p) for p in promoted])
    if promoted:
        log.info("waitlist promoted after capacity change", session_id=event.session_id,
                 promoted=[p.enrollment_id for p in promoted])


async def on_session_cancelled(uow: UnitOfWork, envelope: Envelope) -> None:
    """Every enrollment and waitlist entry of the session is cancelled (reason session_cancelled)."""
    event = envelope.data
    assert isinstance(event, SessionCancelled)
    known = await get_session(uow, event.session_id)
    if known is None:
        log.warning("cancellation of a session never seen scheduled; recorded as cancelled",
                    session_id=event.session_id, event_id=envelope.id)
        known = SessionView(session_id=event.session_id, capacity=0, time_zone=None, slots=())
    view = replace(known, cancelled=True)
    await put_session(uow, view)
    roster = await load_roster(uow, view)
    expected = roster.version
    cancelled = roster.session_cancelled(view, event.occurred_at, event.backdated)
    await save(uow, roster, expected, [envelope.caused(c) for c in cancelled])
    if cancelled:
        log.info("enrollments cancelled with the session", session_id=event.session_id, count=len(cancelled))


HANDLERS = {
    SessionScheduled: on_session_planned,
    SessionRescheduled: on_session_planned,
    SessionCancelled: on_session_cancelled,
}
