"""HTTP API of the finance service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from shared.auth import AUTH_RESPONSES, FINANCE, READER, require
from shared.commands import Trace
from shared.errors import NotFound
from shared.store.port import Store

from ..adapters.documents import PARKED, SESSIONS, session_from_doc
from ..application import handlers
from ..application.commands import AllocateBudget, RecordCost, SetPerLearnerRates
from ..projections import ledger


def router(store: Store) -> APIRouter:
    WRITE = [Depends(require(FINANCE))]  # commands: the finance role; reads: any valid token
    api = APIRouter(tags=["finance"], dependencies=[Depends(require(READER))], responses=AUTH_RESPONSES)

    @api.post("/budgets", dependencies=WRITE, status_code=201,
              responses={200: {"description": "same allocation_id with the same content again, unchanged"},
                         409: {"description": "allocation_id used with other content"},
                         422: {"description": "invalid, or another currency"}})
    async def allocate(cmd: AllocateBudget, request: Request, response: Response) -> dict[str, Any]:
        """Allocate budget to a cost centre for a year; allocations add up, in the currency of the first; an optional allocation_id makes a retry safe."""
        allocation, created = await handlers.allocate_budget(store, cmd, Trace.from_headers(request.headers))
        if not created:
            response.status_code = 200
        return allocation

    @api.put("/cost-centres/{cost_centre}/per-learner-rates", dependencies=WRITE)
    async def set_rates(cost_centre: str, cmd: SetPerLearnerRates, request: Request) -> dict[str, Any]:
        """Set the per-learner rates (per day or per session) a cost centre applies to new enrollments."""
        return await handlers.set_per_learner_rates(store, cost_centre, cmd, Trace.from_headers(request.headers))

    @api.post("/costs", dependencies=WRITE, status_code=201,
              responses={200: {"description": "same invoice again, unchanged"},
                         409: {"description": "invoice_ref used with other content"}})
    async def record_cost(cmd: RecordCost, request: Request, response: Response) -> dict[str, Any]:
        """Record an actual cost (invoice, or credit note); the same invoice_ref again returns the existing entry."""
        entry, created = await handlers.record_cost(store, cmd, Trace.from_headers(request.headers))
        if not created:
            response.status_code = 200
        return entry

    @api.get("/cost-centres/{cost_centre}")
    async def get_cost_centre(cost_centre: str) -> dict[str, Any]:
        """Budgets, committed and actual costs, rates and the ledger of a cost centre."""
        view = await ledger.cost_centre_view(store, cost_centre)
        if view is None:
            raise NotFound(f"no budget, rate or cost recorded for cost centre {cost_centre}",
                           code="unknown_cost_centre")
        return view

    @api.get("/sessions/{session_id}/costs")
    async def session_costs(session_id: str) -> dict[str, Any]:
        """The cost entries of one session."""
        doc = await store.get(SESSIONS, session_id)
        entries = await ledger.session_entries(store, session_id)
        parked = await store.get(PARKED, session_id)
        if doc is None and not entries and parked is None:
            raise NotFound(f"finance knows no costs of session {session_id}", code="unknown_session")
        costs, _ = session_from_doc(session_id, doc)
        facts = costs.facts
        status = "unknown" if facts is None else ("cancelled" if facts.cancelled else "scheduled")
        return {
            "session_id": session_id,
            "status": status,
            "cost_centre": facts.cost_centre if facts else None,
            "period": facts.period if facts else None,
            "teaching_days": facts.teaching_days if facts else None,
            "open_committed": [{"currency": c, "amount": str(a)} for c, a in sorted(costs.committed().items())],
            "parked_enrollment_events": len(parked["events"]) if parked else 0,
            "entries": entries,
        }

    return api
