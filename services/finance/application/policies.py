"""Handlers of consumed events: what scheduling and enrollment facts cost.

Each runs inside the consumer's transaction (inbox claim + events + outbox + documents together). The cost ids
are derived from the causing event's id, so a replay of the same events books the same ids.

Scheduling and enrollment publish on different topics, so their events arrive in any order relative to each
other. An enrollment event for a session finance has not seen yet is *parked* (kept in a document, never dropped
or dead-lettered) and applied, in arrival order, right after the session's ``SessionScheduled``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from shared.contracts.enrollment import EnrollmentCancelled, LearnerEnrolled, LearnerWaitlisted
from shared.contracts.finance import CostIncurred
from shared.contracts.scheduling import SessionCancelled, SessionPlan, SessionRescheduled, SessionScheduled
from shared.messaging.envelope import Envelope
from shared.store.port import UnitOfWork

from ..adapters.documents import load_session, park, rates_in_force, save_session, session_stream, unpark
from ..domain.model import Cause, SessionCosts
from ..projections import ledger

log = structlog.get_logger()

Handler = Callable[[UnitOfWork, Envelope], Awaitable[None]]


def _cause(envelope: Envelope) -> Cause:
    return Cause(event_id=envelope.id, occurred_at=envelope.data.occurred_at)


async def _book(uow: UnitOfWork, costs: SessionCosts, version: int, cause: Envelope,
                events: list[CostIncurred]) -> int:
    """Store the costs caused by ``cause`` (events + outbox + read models); returns the stream's new version."""
    if not events:
        return version
    version = await uow.append(session_stream(costs.session_id), version, [cause.caused(e) for e in events])
    await ledger.record(uow, list(events))
    return version


async def on_session_planned(uow: UnitOfWork, envelope: Envelope) -> None:
    """``SessionScheduled`` / ``SessionRescheduled``: commit the planned costs (and re-cost the per-learner ones
    when the period or the teaching days changed), then apply the enrollment events parked for the session."""
    event = envelope.data
    assert isinstance(event, SessionScheduled | SessionRescheduled)
    costs, version = await load_session(uow, event.session_id)
    plan = SessionPlan.model_validate(event.model_dump(include=set(SessionPlan.model_fields)))
    version = await _book(uow, costs, version, envelope, costs.schedule(plan, _cause(envelope)))
    parked = await unpark(uow, event.session_id)
    for waiting in parked:
        version = await _apply_enrollment(uow, costs, version, waiting)
    if parked:
        log.info("parked enrollment events applied", session_id=event.session_id, count=len(parked))
    await save_session(uow, costs, version)


async def on_session_cancelled(uow: UnitOfWork, envelope: Envelope) -> None:
    """``SessionCancelled``: reverse every open commitment of the session."""
    event = envelope.data
    assert isinstance(event, SessionCancelled)
    costs, version = await load_session(uow, event.session_id)
    if not costs.known:
        log.warning("cancellation of a session finance has not seen scheduled", session_id=event.session_id)
    version = await _book(uow, costs, version, envelope, costs.cancel(_cause(envelope)))
    await save_session(uow, costs, version)


async def on_enrollment_event(uow: UnitOfWork, envelope: Envelope) -> None:
    """``LearnerEnrolled`` / ``LearnerWaitlisted`` / ``EnrollmentCancelled``; parked while the session is unknown."""
    session_id = envelope.data.aggregate_id()
    costs, version = await load_session(uow, session_id)
    if not costs.known:
        count = await park(uow, envelope)
        log.info("enrollment event parked until the session is scheduled", session_id=session_id,
                 event_type=envelope.type, event_id=envelope.id, parked=count)
        return
    version = await _apply_enrollment(uow, costs, version, envelope)
    await save_session(uow, costs, version)


async def _apply_enrollment(uow: UnitOfWork, costs: SessionCosts, version: int, envelope: Envelope) -> int:
    event = envelope.data
    assert costs.facts is not None
    if isinstance(event, LearnerEnrolled):
        rates = []
        if not costs.facts.cancelled:
            rates = await rates_in_force(uow, costs.facts.cost_centre)
            if not rates:
                log.info("no per-learner rates for the cost centre: enrollment costs nothing",
                         cost_centre=costs.facts.cost_centre, session_id=costs.session_id,
                         enrollment_id=event.enrollment_id)
        return await _book(uow, costs, version, envelope, costs.enroll(event.enrollment_id, rates, _cause(envelope)))
    if isinstance(event, LearnerWaitlisted):
        return await _book(uow, costs, version, envelope, costs.waitlist(event.enrollment_id))
    if isinstance(event, EnrollmentCancelled):
        # previous_status "waitlisted" held no seat and no cost: the reconciliation then finds nothing to reverse
        return await _book(uow, costs, version, envelope,
                           costs.cancel_enrollment(event.enrollment_id, _cause(envelope)))
    raise TypeError(f"not an enrollment event: {type(event).__name__}")  # pragma: no cover


HANDLERS: dict[type, Handler] = {
    SessionScheduled: on_session_planned,
    SessionRescheduled: on_session_planned,
    SessionCancelled: on_session_cancelled,
    LearnerEnrolled: on_enrollment_event,
    LearnerWaitlisted: on_enrollment_event,
    EnrollmentCancelled: on_enrollment_event,
}
