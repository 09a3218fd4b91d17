"""HTTP read API of the reporting service (JSON). Numbers are counts; fill_rate a number with 4 decimals (or
null without capacity); money amounts strings with 2 decimals."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from shared.auth import AUTH_RESPONSES, READER, require
from shared.store.port import Store

from ..application import queries
from ..application.queries import SessionFilter

BUDGET_FIGURES = (
    "One line per (cost_centre, period, currency): allocated (sum of allocations), committed (committed costs, "
    "reversals included), actual (invoiced costs, reversals included), remaining = allocated - max(committed, "
    "actual): an invoice usually settles a commitment already counted, so the larger of the two is what is used up."
)
PERIOD = Query(default=None, pattern=r"^\d{4}$", description="Budget period (calendar year, YYYY).")


def session_filter(
    year: Annotated[int | None, Query(ge=1, le=9999, description="Local year of the session start.")] = None,
    course_code: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    venue: Annotated[str | None, Query(min_length=1, max_length=128,
                                       description="venue_id or virtual_room_id")] = None,
) -> SessionFilter:
    return SessionFilter(year, course_code, venue)


Filter = Annotated[SessionFilter, Depends(session_filter)]


def router(store: Store) -> APIRouter:
    api = APIRouter(dependencies=[Depends(require(READER))], responses=AUTH_RESPONSES)  # any valid token
    answers = queries.Answers(store)  # kept until the projections change

    @api.get("/occupancy/totals", tags=["occupancy"])
    async def totals(where: Filter) -> dict[str, Any]:
        """Occupancy over all (filtered) sessions."""
        return await answers.get(("totals", where.key()), lambda: queries.totals(store, where))

    @api.get("/occupancy/sessions", tags=["occupancy"])
    async def sessions(where: Filter) -> dict[str, Any]:
        """Occupancy per session."""
        return await answers.get(("sessions", where.key()), lambda: queries.list_sessions(store, where))

    @api.get("/occupancy/sessions/{session_id:path}", tags=["occupancy"],
             responses={404: {"description": "no event of this session seen"}})
    async def session(session_id: str) -> dict[str, Any]:
        """Occupancy of one session."""
        return await queries.get_session(store, session_id)

    @api.get("/occupancy/by-venue", tags=["occupancy"])
    async def by_venue(where: Filter) -> dict[str, Any]:
        """Occupancy rolled up per venue or virtual room."""
        return await answers.get(("by_venue", where.key()), lambda: queries.rollup(store, "by_venue", where))

    @api.get("/occupancy/by-course", tags=["occupancy"])
    async def by_course(where: Filter) -> dict[str, Any]:
        """Occupancy rolled up per course."""
        return await answers.get(("by_course", where.key()), lambda: queries.rollup(store, "by_course", where))

    @api.get("/occupancy/by-month", tags=["occupancy"])
    async def by_month(where: Filter) -> dict[str, Any]:
        """Occupancy rolled up per month of the local session start."""
        return await answers.get(("by_month", where.key()), lambda: queries.rollup(store, "by_month", where))

    @api.get("/occupancy/by-year", tags=["occupancy"])
    async def by_year(where: Filter) -> dict[str, Any]:
        """Occupancy rolled up per year of the local session start."""
        return await answers.get(("by_year", where.key()), lambda: queries.rollup(store, "by_year", where))

    @api.get("/budgets", tags=["budgets"], description=BUDGET_FIGURES)
    async def budgets(period: str | None = PERIOD) -> dict[str, Any]:
        return await answers.get(("budgets", period), lambda: queries.list_budgets(store, period))

    @api.get("/budgets/{cost_centre:path}", tags=["budgets"], description=BUDGET_FIGURES,
             responses={404: {"description": "no budget or cost of this cost centre seen"}})
    async def cost_centre(cost_centre: str, period: str | None = PERIOD) -> dict[str, Any]:
        return await queries.cost_centre_budgets(store, cost_centre, period)

    return api
