"""Read queries of the reporting API: documents from the projections, figures from the pure domain rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.errors import NotFound
from shared.store.port import Store

from ..domain import occupancy as rules
from ..domain.occupancy import SessionOccupancy
from ..projections import budgets, occupancy


class SessionFilter:
    """?year=&course_code=&venue= (each optional)."""

    def __init__(self, year: int | None = None, course_code: str | None = None, venue: str | None = None) -> None:
        self.year = year
        self.course_code = course_code
        self.venue = venue

    async def sessions(self, store: Store) -> list[SessionOccupancy]:
        return await occupancy.sessions(store, self.year, self.course_code, self.venue)


async def list_sessions(store: Store, where: SessionFilter) -> dict[str, Any]:
    found = await where.sessions(store)
    return {"sessions": [s.view() for s in found], "count": len(found)}


async def get_session(store: Store, session_id: str) -> dict[str, Any]:
    found = await occupancy.session(store, session_id)
    if found is None:
        raise NotFound(f"reporting has seen no event of session {session_id}", code="unknown_session")
    return found.view()


async def totals(store: Store, where: SessionFilter) -> dict[str, Any]:
    found = await where.sessions(store)
    return {**rules.totals(found).as_dict(), "awaiting_schedule": rules.awaiting_schedule(found)}


ROLLUPS: dict[str, tuple[str, Callable[[SessionOccupancy], Any]]] = {
    "by_venue": ("venue", rules.by_venue),
    "by_course": ("course_code", rules.by_course),
    "by_month": ("month", rules.by_month),
    "by_year": ("year", rules.by_year),
}


async def rollup(store: Store, name: str, where: SessionFilter) -> dict[str, Any]:
    label, key = ROLLUPS[name]
    groups = rules.rollup(await where.sessions(store), key)
    return {name: [{label: k, **figures.as_dict()} for k, figures in groups.items()]}


async def list_budgets(store: Store, period: str | None = None) -> dict[str, Any]:
    found = await budgets.lines(store, period=period)
    return {"budgets": [line.view() for line in found], "count": len(found)}


async def cost_centre_budgets(store: Store, cost_centre: str, period: str | None = None) -> dict[str, Any]:
    found = await budgets.lines(store, cost_centre=cost_centre)
    if not found:
        raise NotFound(f"reporting has seen no budget or cost of cost centre {cost_centre}",
                       code="unknown_cost_centre")
    return {"cost_centre": cost_centre,
            "budgets": [line.view() for line in found if period is None or line.period == period]}
