"""Command handlers: load the session, decide, store events + outbox + bookings in one transaction."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError

from shared.commands import Trace, retry_on_concurrency
from shared.contracts.scheduling import SessionPlan
from shared.errors import Conflict, Invalid, NotFound
from shared.store.port import Store, UnitOfWork

from ..adapters.calendar import bookings_for, replace_bookings
from ..domain.model import Session, bookings_of, find_conflicts, raise_if_conflicts, resources_of
from .commands import CancelSession, PlanFields, RescheduleSession, ScheduleSession, to_plan

SESSIONS = "sessions"  # read model: one document per session, for the HTTP API


def stream_of(session_id: str) -> str:
    return f"session-{session_id}"


async def _load(uow: UnitOfWork, session_id: str) -> Session:
    recorded = await uow.read_stream(stream_of(session_id))
    return Session.from_events(session_id, [r.envelope.data for r in recorded])


def view(session: Session, status_override: str | None = None) -> dict[str, Any]:
    assert session.plan is not None
    return {
        "session_id": session.session_id,
        "status": status_override or ("cancelled" if session.cancelled else "scheduled"),
        "version": session.version,
        **session.plan.model_dump(mode="json"),
        "starts_at": session.plan.starts_at.isoformat(),
        "ends_at": session.plan.ends_at.isoformat(),
    }


async def _store(uow: UnitOfWork, session: Session, events: list[Any], trace: Trace) -> dict[str, Any]:
    old_bookings = bookings_of(session.session_id, session.plan) if session.plan and not session.cancelled else []
    expected = session.version
    for event in events:
        session.apply(event)
    await uow.append(stream_of(session.session_id), expected, [trace.envelope(e) for e in events])
    new_bookings = bookings_of(session.session_id, session.plan) if session.plan and not session.cancelled else []
    await replace_bookings(uow, session.session_id, old_bookings, new_bookings)
    doc = view(session)
    await uow.put(SESSIONS, session.session_id, doc)
    return doc


async def _check_bookings(uow: UnitOfWork, session_id: str, plan: SessionPlan) -> None:
    wanted = bookings_of(session_id, plan)
    existing = await bookings_for(uow, resources_of(plan))
    raise_if_conflicts(find_conflicts(wanted, existing))


async def decide_schedule(uow: UnitOfWork, cmd: ScheduleSession, trace: Trace,
                          session_id: str) -> tuple[dict[str, Any], bool]:
    """Schedule on a given unit of work (HTTP: its own transaction; Kafka: the consumer's). Writes only on success."""
    now, backdated = cmd.effective_time()
    plan = to_plan(cmd)
    session = await _load(uow, session_id)
    if session.exists:
        if session.plan == plan and not session.cancelled:
            return view(session), False
        raise Conflict(f"session {session_id} already exists with another plan", code="session_exists")
    event = session.schedule(plan, now, backdated)
    await _check_bookings(uow, session_id, plan)
    return await _store(uow, session, [event], trace), True


async def decide_reschedule(uow: UnitOfWork, session_id: str, cmd: RescheduleSession,
                            trace: Trace) -> tuple[dict[str, Any], bool]:
    now, backdated = cmd.effective_time()
    session = await _load(uow, session_id)
    if not session.exists:
        raise NotFound(f"no session {session_id}", code="unknown_session")
    assert session.plan is not None
    current = session.plan.model_dump(mode="json")
    changes = cmd.model_dump(exclude_unset=True, exclude={"as_of", "backdated"}, mode="json")
    if changes.get("delivery") == "classroom" and "virtual_room_id" not in changes:
        current["virtual_room_id"] = None
    if changes.get("delivery") == "virtual" and "venue_id" not in changes:
        current["venue_id"] = None
    try:  # the changes are valid on their own; the plan they make with the rest must be too
        merged = PlanFields.model_validate({**current, **changes})
    except ValidationError as exc:  # e.g. "equipment_ids": null, a classroom left without a venue
        raise _invalid_plan(exc) from None
    plan = to_plan(merged)
    event = session.reschedule(plan, now, backdated)
    if event is None:
        return view(session), False
    await _check_bookings(uow, session_id, plan)
    return await _store(uow, session, [event], trace), True


def _invalid_plan(exc: ValidationError) -> Invalid:
    """422 naming every field of the merged plan that is wrong (messages only, never the values)."""
    detail = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err.get("loc", ())) or "body"
        reason = err.get("msg", "invalid")
        if err.get("type") == "list_type" or (err.get("type", "").endswith("_type") and "None" in reason):
            reason += " (null is not a value here: leave the field out to keep the current one)"
        detail.append({"field": field, "reason": reason})
    invalid = Invalid(detail[0]["field"], detail[0]["reason"], code="invalid_plan")
    invalid.details["detail"] = detail
    return invalid


async def decide_cancel(uow: UnitOfWork, session_id: str, cmd: CancelSession,
                        trace: Trace) -> tuple[dict[str, Any], bool]:
    now, backdated = cmd.effective_time()
    session = await _load(uow, session_id)
    if not session.exists:
        raise NotFound(f"no session {session_id}", code="unknown_session")
    event = session.cancel(cmd.reason, now, backdated)
    if event is None:
        return view(session), False
    return await _store(uow, session, [event], trace), True


async def schedule_session(store: Store, cmd: ScheduleSession, trace: Trace) -> tuple[dict[str, Any], bool]:
    """Returns (session view, created). Scheduling an existing id with the same plan returns it unchanged."""
    cmd.effective_time()  # a bad as_of is refused before a transaction is opened
    to_plan(cmd)
    session_id = cmd.session_id or str(uuid.uuid4())

    async def attempt() -> tuple[dict[str, Any], bool]:
        async with store.transaction() as uow:
            return await decide_schedule(uow, cmd, trace, session_id)

    return await retry_on_concurrency(attempt)


async def reschedule_session(store: Store, session_id: str, cmd: RescheduleSession, trace: Trace) -> dict[str, Any]:
    cmd.effective_time()

    async def attempt() -> dict[str, Any]:
        async with store.transaction() as uow:
            return (await decide_reschedule(uow, session_id, cmd, trace))[0]

    return await retry_on_concurrency(attempt)


async def cancel_session(store: Store, session_id: str, cmd: CancelSession, trace: Trace) -> dict[str, Any]:
    cmd.effective_time()

    async def attempt() -> dict[str, Any]:
        async with store.transaction() as uow:
            return (await decide_cancel(uow, session_id, cmd, trace))[0]

    return await retry_on_concurrency(attempt)
