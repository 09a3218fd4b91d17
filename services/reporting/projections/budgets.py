"""Budget projection: every ``BudgetAllocated`` and ``CostIncurred`` updates its (cost centre, period, currency)
line, inside the consumer's transaction. Rebuildable from the finance topic like the occupancy documents."""

from __future__ import annotations

from shared.contracts.finance import BudgetAllocated, CostIncurred
from shared.messaging.envelope import Envelope
from shared.store.port import Store, UnitOfWork

from ..adapters.documents import BudgetDocuments
from ..domain.budget import BudgetLine


async def apply(uow: UnitOfWork, envelope: Envelope) -> None:
    event = envelope.data
    if not isinstance(event, BudgetAllocated | CostIncurred):
        raise TypeError(f"{type(event).__name__} does not concern a budget")
    line = await BudgetDocuments.load(uow, *BudgetLine.key_of(event))
    line.apply(event)
    await BudgetDocuments.save(uow, line)


async def lines(store: Store, cost_centre: str | None = None, period: str | None = None) -> list[BudgetLine]:
    found = [
        line for line in await BudgetDocuments.all(store)
        if (cost_centre is None or line.cost_centre == cost_centre) and (period is None or line.period == period)
    ]
    return sorted(found, key=lambda line: line.sort_key)
