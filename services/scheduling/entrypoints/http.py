"""HTTP API of the scheduling service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from shared.auth import AUTH_RESPONSES, READER, SCHEDULER, require
from shared.commands import Trace
from shared.errors import NotFound
from shared.store.port import Store

from ..application import handlers
from ..application.commands import CancelSession, RescheduleSession, ScheduleSession


def router(store: Store) -> APIRouter:
    WRITE = [Depends(require(SCHEDULER))]  # commands: the scheduler role; reads: any valid token
    api = APIRouter(tags=["sessions"], dependencies=[Depends(require(READER))], responses=AUTH_RESPONSES)

    @api.post("/sessions", dependencies=WRITE, status_code=201,
              responses={200: {"description": "already scheduled, unchanged"}, 409: {"description": "booking conflict"}})
    async def schedule(cmd: ScheduleSession, request: Request, response: Response) -> dict[str, Any]:
        """Schedule a session; 409 names the session holding an instructor, venue, room or equipment item."""
        view, created = await handlers.schedule_session(store, cmd, Trace.from_headers(request.headers))
        if not created:
            response.status_code = 200
        response.headers["Location"] = f"/sessions/{view['session_id']}"
        return view

    @api.post("/sessions/{session_id}/reschedule", dependencies=WRITE)
    async def reschedule(session_id: str, cmd: RescheduleSession, request: Request) -> dict[str, Any]:
        """Change a session's times, place, people, capacity or costs (fields left out stay); same conflict rules."""
        return await handlers.reschedule_session(store, session_id, cmd, Trace.from_headers(request.headers))

    @api.post("/sessions/{session_id}/cancel", dependencies=WRITE)
    async def cancel(session_id: str, request: Request, cmd: CancelSession | None = None) -> dict[str, Any]:
        """Cancel a session (enrollment cancels its enrollments, finance reverses its costs); the body is optional."""
        return await handlers.cancel_session(store, session_id, cmd or CancelSession(),
                                             Trace.from_headers(request.headers))

    @api.get("/sessions/{session_id}")
    async def get_session(session_id: str) -> dict[str, Any]:
        """One session as scheduling knows it."""
        doc = await store.get(handlers.SESSIONS, session_id)
        if doc is None:
            raise NotFound(f"no session {session_id}", code="unknown_session")
        return doc

    @api.get("/sessions")
    async def list_sessions() -> dict[str, Any]:
        """All sessions."""
        docs = [doc for _, doc in await store.scan(handlers.SESSIONS)]
        return {"sessions": docs, "count": len(docs)}

    return api
