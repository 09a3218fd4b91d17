"""Where the reporting views live inside the reporting store: one document per session, one per budget line.

Written inside the consumer's transaction (the same one that claims the event id and saves the checkpoint), read
outside any transaction by the HTTP API. Within one transaction (a consumed batch) a document is loaded once: the
object stays in the unit of work's ``memo`` and its write is deferred to the commit, so 500 events about one session
cost one read and one write.
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
        memo = uow.memo
        session: SessionOccupancy | None = memo.get((SESSIONS, session_id))
        if session is None:
            doc = await uow.get(SESSIONS, session_id)
            session = SessionOccupancy.from_document(doc) if doc else SessionOccupancy(session_id)
            memo[(SESSIONS, session_id)] = session
        return session

    @staticmethod
    async def save(uow: UnitOfWork, session: SessionOccupancy) -> None:
        key = session.session_id
        uow.memo[(SESSIONS, key)] = session
        uow.defer((SESSIONS, key), lambda: uow.put(SESSIONS, key, session.to_document()))

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
        key = budget_key(cost_centre, period, currency)
        line: BudgetLine | None = uow.memo.get((BUDGETS, key))
        if line is None:
            doc = await uow.get(BUDGETS, key)
            line = BudgetLine.from_document(doc) if doc else BudgetLine(cost_centre, period, currency)
            uow.memo[(BUDGETS, key)] = line
        return line

    @staticmethod
    async def save(uow: UnitOfWork, line: BudgetLine) -> None:
        key = budget_key(line.cost_centre, line.period, line.currency)
        uow.memo[(BUDGETS, key)] = line
        uow.defer((BUDGETS, key), lambda: uow.put(BUDGETS, key, line.to_document()))

    @staticmethod
    async def all(store: Store) -> list[BudgetLine]:
        return [BudgetLine.from_document(doc) for _, doc in await store.scan(BUDGETS)]
