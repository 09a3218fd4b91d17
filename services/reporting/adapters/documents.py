"""Where the reporting views live inside the reporting store: one document per session, one per budget line.

Written inside the consumer's transaction (the same one that claims the event id and saves the checkpoint), read
outside any transaction by the HTTP API.
"""

from __future__ import annotations

from shared.store.port import Store, UnitOfWork

from ..domain.budget import BudgetLine
from ..domain.occupancy import SessionOccupancy

SESSIONS = "occupancy-sessions"  # key: session id
BUDGETS = "budget-lines"  # key: cost_centre|period|currency ("|" never occurs in a period or currency)


def budget_key(cost_centre: str, period: str, currency: str) -> str:
    return f"{cost_centre}|{period}|{currency}"


class SessionDocuments:
    @staticmethod
    async def load(uow: UnitOfWork, session_id: str) -> SessionOccupancy:
        doc = await uow.get(SESSIONS, session_id)
        return SessionOccupancy.from_document(doc) if doc else SessionOccupancy(session_id)

    @staticmethod
    async def save(uow: UnitOfWork, session: SessionOccupancy) -> None:
        await uow.put(SESSIONS, session.session_id, session.to_document())

    @staticmethod
    async def get(store: Store, session_id: str) -> SessionOccupancy | None:
        doc = await store.get(SESSIONS, session_id)
        return SessionOccupancy.from_document(doc) if doc else None

    @staticmethod
    async def all(store: Store) -> list[SessionOccupancy]:
        return [SessionOccupancy.from_document(doc) for _, doc in await store.scan(SESSIONS)]


class BudgetDocuments:
    @staticmethod
    async def load(uow: UnitOfWork, cost_centre: str, period: str, currency: str) -> BudgetLine:
        doc = await uow.get(BUDGETS, budget_key(cost_centre, period, currency))
        return BudgetLine.from_document(doc) if doc else BudgetLine(cost_centre, period, currency)

    @staticmethod
    async def save(uow: UnitOfWork, line: BudgetLine) -> None:
        await uow.put(BUDGETS, budget_key(line.cost_centre, line.period, line.currency), line.to_document())

    @staticmethod
    async def all(store: Store) -> list[BudgetLine]:
        return [BudgetLine.from_document(doc) for _, doc in await store.scan(BUDGETS)]
