"""HTTP API of the enrollment service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from shared.auth import AUTH_RESPONSES, ENROLLER, READER, require
from shared.commands import Trace
from shared.errors import NotFound
from shared.store.port import Store

from ..adapters.arrivals import SessionArrivals
from ..adapters.rosters import ENROLLMENT_INDEX, ROSTERS, find_in_roster_view
from ..application import handlers
from ..application.commands import (
    CancelEnrollment,
    EnrollLearner,
    EnrollLearners,
    RecordAttendance,
    RecordAttendances,
)

UNKNOWN_SESSION = {404: {"description": "unknown session (retryable: scheduling's event may not have arrived yet)"}}


def router(store: Store, arrivals: SessionArrivals, session_wait_seconds: float) -> APIRouter:
    WRITE = [Depends(require(ENROLLER))]  # commands: the enroller role; reads: any valid token
    api = APIRouter(tags=["enrollments"], dependencies=[Depends(require(READER))], responses=AUTH_RESPONSES)

    @api.post("/sessions/{session_id}/enrollments", dependencies=WRITE, status_code=201,
              responses={200: {"description": "the learner already holds an enrollment, unchanged"},
                         409: {"description": "session cancelled or finished"}, **UNKNOWN_SESSION})
    async def enroll(session_id: str, cmd: EnrollLearner, request: Request, response: Response) -> dict[str, Any]:
        """Enroll a learner: a seat while there is one, else the waitlist; the same learner again returns the existing enrollment."""
        view, created = await handlers.enroll_learner(store, session_id, cmd, Trace.from_headers(request.headers),
                                                      arrivals=arrivals, wait_seconds=session_wait_seconds)
        if not created:
            response.status_code = 200
        response.headers["Location"] = f"/enrollments/{view['enrollment_id']}"
        return view

    @api.post("/sessions/{session_id}/enrollments/batch", dependencies=WRITE,
              responses={409: {"description": "session cancelled or finished"}, **UNKNOWN_SESSION})
    async def enroll_batch(session_id: str, cmd: EnrollLearners, request: Request) -> dict[str, Any]:
        """Enroll up to 1,000 learners into one session in one transaction (bulk import path)."""
        return await handlers.enroll_learners(store, session_id, cmd, Trace.from_headers(request.headers),
                                              arrivals=arrivals, wait_seconds=session_wait_seconds)

    @api.post("/enrollments/{enrollment_id}/cancel", dependencies=WRITE)
    async def cancel(enrollment_id: str, request: Request, cmd: CancelEnrollment | None = None) -> dict[str, Any]:
        """Cancel an enrollment; a freed seat promotes the first waitlisted learner. The body is optional."""
        return await handlers.cancel_enrollment(store, enrollment_id, cmd or CancelEnrollment(),
                                                Trace.from_headers(request.headers))

    @api.post("/enrollments/{enrollment_id}/attendance", dependencies=WRITE)
    async def attendance(enrollment_id: str, cmd: RecordAttendance, request: Request) -> dict[str, Any]:
        """Record (or correct) attendance of an enrolled learner: attended, partial or no_show."""
        return await handlers.record_attendance(store, enrollment_id, cmd, Trace.from_headers(request.headers))

    @api.post("/sessions/{session_id}/attendance/batch", dependencies=WRITE,
              responses={404: {"description": "session unknown to enrollment"},
                         409: {"description": "session not started or cancelled, or a record's learner is not "
                                              "enrolled (names the record; nothing written)"},
                         422: {"description": "a record names no enrollment of this session, or one enrollment "
                                              "twice with different statuses (names the record; nothing written)"}})
    async def attendance_batch(session_id: str, cmd: RecordAttendances, request: Request) -> dict[str, Any]:
        """Record (or correct) the attendance of up to 1,000 enrolled learners of one session in one transaction; a refused record refuses the whole batch (bulk import path)."""
        return await handlers.record_attendances(store, session_id, cmd, Trace.from_headers(request.headers))

    @api.get("/enrollments/{enrollment_id}")
    async def get_enrollment(enrollment_id: str) -> dict[str, Any]:
        """One enrollment."""
        index = await store.get(ENROLLMENT_INDEX, enrollment_id)
        roster = await store.get(ROSTERS, index["session_id"]) if index else None
        found = find_in_roster_view(roster, enrollment_id) if roster else None
        if found is None:
            raise NotFound(f"no enrollment {enrollment_id}", code="unknown_enrollment",
                           details={"enrollment_id": enrollment_id})
        return found

    @api.get("/sessions/{session_id}/roster")
    async def get_roster(session_id: str) -> dict[str, Any]:
        """A session's enrolled learners and waitlist, in order."""
        doc = await store.get(ROSTERS, session_id)
        if doc is None:
            raise NotFound(f"no session {session_id} is known to enrollment", code="unknown_session",
                           details={"session_id": session_id})
        return doc

    return api
