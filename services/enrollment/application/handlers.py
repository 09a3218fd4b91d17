"""Command handlers: load the session view and the roster, decide, store events + outbox + views in one
transaction."""

from __future__ import annotations

from typing import Any

import structlog

from shared.commands import Trace, retry_on_concurrency
from shared.contracts.enrollment import LearnerEnrolled, LearnerWaitlisted
from shared.errors import NotFound
from shared.messaging.envelope import Envelope, new_id
from shared.store.port import Store, UnitOfWork

from ..adapters.arrivals import SessionArrivals
from ..adapters.rosters import (
    enrollment_view,
    index_enrollments,
    load_roster,
    put_roster_view,
    session_of_enrollment,
    stream_of,
)
from ..adapters.sessions import get_session, read_session
from ..domain.model import Roster, SessionView
from .commands import CancelEnrollment, EnrollLearner, EnrollLearners, RecordAttendance, RecordAttendances

log = structlog.get_logger()
RETRY_UNKNOWN_SESSION_AFTER = 2  # seconds, sent as Retry-After


def new_enrollment_id() -> str:
    return new_id()


async def save(uow: UnitOfWork, roster: Roster, expected_version: int, envelopes: list[Envelope]) -> None:
    """Append the roster's new events (also to the outbox), index new enrollments, refresh the roster view."""
    if envelopes:
        await uow.append(stream_of(roster.session_id), expected_version, envelopes)
        new = [e.data.enrollment_id for e in envelopes if isinstance(e.data, LearnerWaitlisted)
               or (isinstance(e.data, LearnerEnrolled) and not e.data.promoted_from_waitlist)]
        await index_enrollments(uow, roster.session_id, new)
    await put_roster_view(uow, roster)


async def await_session(store: Store, session_id: str, arrivals: SessionArrivals | None,
                        wait_seconds: float) -> SessionView:
    """The session, waiting up to ``wait_seconds`` for scheduling's event if enrollment has not seen it yet."""
    if arrivals is None or wait_seconds <= 0:
        session = await read_session(store, session_id)
    else:
        session = await arrivals.wait_for(session_id, lambda: read_session(store, session_id), wait_seconds)
    if session is None:
        raise NotFound(
            f"no session {session_id} is known to enrollment (yet): if scheduling has just scheduled it, "
            "try again shortly",
            code="unknown_session",
            details={"session_id": session_id},
            retry_after=RETRY_UNKNOWN_SESSION_AFTER,
        )
    return session


async def _session_in(uow: UnitOfWork, session_id: str) -> SessionView:
    session = await get_session(uow, session_id)
    if session is None:  # cannot happen once seen: session views are never deleted
        raise NotFound(f"no session {session_id} is known to enrollment", code="unknown_session",
                       details={"session_id": session_id})
    return session


async def _known_session(uow: UnitOfWork, session_id: str) -> SessionView:
    """The session as enrollment knows it, or ``unknown_session`` (retryable: scheduling's event may be late)."""
    session = await get_session(uow, session_id)
    if session is None:
        raise NotFound(
            f"no session {session_id} is known to enrollment (yet): if scheduling has just scheduled it, "
            "try again shortly",
            code="unknown_session",
            details={"session_id": session_id},
            retry_after=RETRY_UNKNOWN_SESSION_AFTER,
        )
    return session


async def decide_enroll(uow: UnitOfWork, session_id: str, cmd: EnrollLearner,
                        trace: Trace) -> tuple[dict[str, Any], bool]:
    """Enroll on a given unit of work (HTTP: its own transaction; Kafka: the consumer's). Writes only on success.

    The session must be known to enrollment already (``unknown_session``, retryable, otherwise)."""
    now, backdated = cmd.effective_time()
    roster = await load_roster(uow, await _known_session(uow, session_id))
    expected = roster.version
    enrollment, events = roster.enroll(cmd.learner_id, new_enrollment_id(), now, backdated)
    if events:
        await save(uow, roster, expected, [trace.envelope(e) for e in events])
    return enrollment_view(roster, enrollment), bool(events)


async def enroll_learner(store: Store, session_id: str, cmd: EnrollLearner, trace: Trace, *,
                         arrivals: SessionArrivals | None = None,
                         wait_seconds: float = 0) -> tuple[dict[str, Any], bool]:
    """Returns (the learner's enrollment, created). A learner already holding one gets it back unchanged."""
    cmd.effective_time()  # reject a bad as_of before waiting
    await await_session(store, session_id, arrivals, wait_seconds)

    async def attempt() -> tuple[dict[str, Any], bool]:
        async with store.transaction() as uow:
            return await decide_enroll(uow, session_id, cmd, trace)

    view, created = await retry_on_concurrency(attempt)
    if created:
        log.info("enrollment taken", session_id=session_id, enrollment_id=view["enrollment_id"],
                 status=view["status"])
    return view, created


async def enroll_learners(store: Store, session_id: str, cmd: EnrollLearners, trace: Trace, *,
                          arrivals: SessionArrivals | None = None, wait_seconds: float = 0) -> dict[str, Any]:
    """Bulk import: every learner in order, one transaction, the same rules as one enrollment each.

    Each learner gets a result (enrolled / waitlisted with position, ``created`` false when the learner already
    held that enrollment). The rules that can refuse an enrollment concern the whole session (unknown, cancelled,
    finished): they refuse the whole batch and nothing is written."""
    cmd.effective_time()
    await await_session(store, session_id, arrivals, wait_seconds)
    now, backdated = cmd.effective_time()

    async def attempt() -> dict[str, Any]:
        async with store.transaction() as uow:
            roster = await load_roster(uow, await _session_in(uow, session_id))
            expected = roster.version
            taken: list[tuple[str, bool]] = []
            events = []
            for learner_id in cmd.learners:
                enrollment, new = roster.enroll(learner_id, new_enrollment_id(), now, backdated)
                taken.append((enrollment.enrollment_id, bool(new)))
                events += new
            if events:
                await save(uow, roster, expected, [trace.envelope(e) for e in events])
            positions = roster.positions()
            results = [{**enrollment_view(roster, roster.enrollments[eid], positions), "created": created}
                       for eid, created in taken]
            return {
                "session_id": session_id,
                "results": results,
                "created": sum(1 for r in results if r["created"]),
                "enrolled": sum(1 for r in results if r["created"] and r["status"] == "enrolled"),
                "waitlisted": sum(1 for r in results if r["created"] and r["status"] == "waitlisted"),
                "unchanged": sum(1 for r in results if not r["created"]),
            }

    out = await retry_on_concurrency(attempt)
    log.info("enrollments imported", session_id=session_id, learners=len(cmd.learners), created=out["created"])
    return out


async def _roster_of_enrollment(uow: UnitOfWork, enrollment_id: str) -> Roster:
    session_id = await session_of_enrollment(uow, enrollment_id)
    if session_id is None:
        raise NotFound(f"no enrollment {enrollment_id}", code="unknown_enrollment",
                       details={"enrollment_id": enrollment_id})
    return await load_roster(uow, await _session_in(uow, session_id))


async def decide_cancel(uow: UnitOfWork, enrollment_id: str, cmd: CancelEnrollment,
                        trace: Trace) -> tuple[dict[str, Any], bool]:
    now, backdated = cmd.effective_time()
    roster = await _roster_of_enrollment(uow, enrollment_id)
    expected = roster.version
    cancelled, promoted = roster.cancel(enrollment_id, now, backdated)
    if cancelled is not None:
        first = trace.envelope(cancelled)
        await save(uow, roster, expected, [first, *(first.caused(p) for p in promoted)])
    return ({**enrollment_view(roster, roster.enrollments[enrollment_id]),
             "promoted_enrollment_ids": [p.enrollment_id for p in promoted]}, cancelled is not None)


async def cancel_enrollment(store: Store, enrollment_id: str, cmd: CancelEnrollment, trace: Trace) -> dict[str, Any]:
    """An enrolled learner's seat goes to the first waiting learner, in the same transaction."""
    cmd.effective_time()

    async def attempt() -> dict[str, Any]:
        async with store.transaction() as uow:
            return (await decide_cancel(uow, enrollment_id, cmd, trace))[0]

    out = await retry_on_concurrency(attempt)
    log.info("enrollment cancelled", session_id=out["session_id"], enrollment_id=enrollment_id,
             promoted=out["promoted_enrollment_ids"])
    return out


async def decide_attendance(uow: UnitOfWork, enrollment_id: str, cmd: RecordAttendance,
                            trace: Trace) -> tuple[dict[str, Any], bool]:
    now, backdated = cmd.effective_time()
    roster = await _roster_of_enrollment(uow, enrollment_id)
    expected = roster.version
    event = roster.record_attendance(enrollment_id, cmd.status, now, backdated)
    if event is not None:
        await save(uow, roster, expected, [trace.envelope(event)])
    return enrollment_view(roster, roster.enrollments[enrollment_id]), event is not None


async def record_attendance(store: Store, enrollment_id: str, cmd: RecordAttendance, trace: Trace) -> dict[str, Any]:
    cmd.effective_time()

    async def attempt() -> dict[str, Any]:
        async with store.transaction() as uow:
            return (await decide_attendance(uow, enrollment_id, cmd, trace))[0]

    return await retry_on_concurrency(attempt)


async def record_attendances(store: Store, session_id: str, cmd: RecordAttendances, trace: Trace) -> dict[str, Any]:
    """Bulk import of one session's attendance: one transaction, the rules of ``record_attendance`` per record.

    All or nothing: a record that breaks a rule (an enrollment not of this session, not enrolled, listed twice
    with different statuses) refuses the whole batch, naming the record (``index``, ``detail[].field``), and
    nothing is written; so does a session that has not started (judged at as_of) or is cancelled. Each record gets
    a result: the enrollment with its attendance and ``changed`` (false when it already had that status)."""
    now, backdated = cmd.effective_time()
    marks = [(r.enrollment_id, r.status) for r in cmd.records]

    async def attempt() -> dict[str, Any]:
        async with store.transaction() as uow:
            roster = await load_roster(uow, await _session_in(uow, session_id))
            expected = roster.version
            decided = roster.record_attendances(marks, now, backdated)
            events = [e for _, e in decided if e is not None]
            if events:
                await save(uow, roster, expected, [trace.envelope(e) for e in events])
            return {
                "session_id": session_id,
                "results": [{**enrollment_view(roster, enrollment), "changed": event is not None}
                            for enrollment, event in decided],
                "recorded": sum(1 for e in events if e.previous_status is None),
                "corrected": sum(1 for e in events if e.previous_status is not None),
                "unchanged": len(decided) - len(events),
            }

    out = await retry_on_concurrency(attempt)
    log.info("attendance imported", session_id=session_id, records=len(marks), recorded=out["recorded"],
             corrected=out["corrected"])
    return out
