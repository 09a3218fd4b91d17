"""Read queries of the reporting API: documents from the projections, figures from the pure domain rules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
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

    def key(self) -> tuple[int | None, str | None, str | None]:
        return (self.year, self.course_code, self.venue)

    async def sessions(self, store: Store) -> list[SessionOccupancy]:
        return await occupancy.sessions(store, self.year, self.course_code, self.venue)


class Answers:
    """The read API's answers, kept until the store changes (``Store.data_version``: any commit, by the consumer
    of this process or by anyone else writing the same store). A dashboard polling ``/occupancy/sessions`` costs a
    counter read instead of reading and computing every session again; each change (a consumed batch) empties
    the lot. With a store that cannot tell when it changed (``None``) nothing is kept.

    An answer computed while a commit lands is kept under the older number, so the next call, which sees the new
    number, computes it again; one computed while another call already saw a newer number is not kept: an answer
    is never older than the number it is kept under."""

    def __init__(self, store: Store, kept: int = 256) -> None:
        self.store = store
        self.kept = kept  # answers per store state (one per endpoint and filter asked for)
        self._version: int | None = None
        self._answers: dict[Hashable, dict[str, Any]] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        version = await self.store.data_version()
        if version is None:
            return await compute()
        if version != self._version:
            self._answers.clear()
            self._version = version
        found = self._answers.get(key)
        if found is None:
            found = await compute()
            if self._version != version:  # another call saw a newer number meanwhile: this answer may be older
                return found
            if len(self._answers) >= self.kept:
                self._answers.pop(next(iter(self._answers)))
            self._answers[key] = found
        return found


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
