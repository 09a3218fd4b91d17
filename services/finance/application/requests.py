"""Requests taken from Kafka (``ilt.finance.requests``, e.g. budget allocations and invoices from an ERP): the same
command handlers as the HTTP API, run in the consumer's transaction. Each ends with a request-accepted or
request-rejected event (``shared.commands``)."""

from __future__ import annotations

from typing import Any

from shared.commands import Trace, request_handlers
from shared.contracts.requests import AllocateBudgetRequested, RecordCostRequested, SetPerLearnerRatesRequested
from shared.store.port import UnitOfWork

from . import handlers
from .commands import AllocateBudget, RecordCost, SetPerLearnerRates


async def allocate(uow: UnitOfWork, request: AllocateBudgetRequested, trace: Trace) -> tuple[dict[str, Any], bool]:
    cmd = AllocateBudget.model_validate(request.model_dump())
    # without a client-chosen id, the request's id names the allocation (a redelivery is skipped by the inbox anyway)
    return await handlers.decide_allocation(uow, cmd, trace, cmd.allocation_id or f"request-{trace.causation_id}")


async def set_rates(uow: UnitOfWork, request: SetPerLearnerRatesRequested,
                    trace: Trace) -> tuple[dict[str, Any], bool]:
    cmd = SetPerLearnerRates.model_validate(request.model_dump(exclude={"cost_centre"}))
    return await handlers.decide_rates(uow, request.cost_centre, cmd, trace)


async def record_cost(uow: UnitOfWork, request: RecordCostRequested, trace: Trace) -> tuple[dict[str, Any], bool]:
    cmd = RecordCost.model_validate(request.model_dump())
    return await handlers.decide_cost(uow, cmd, trace)


HANDLERS = request_handlers({
    AllocateBudgetRequested: allocate,
    SetPerLearnerRatesRequested: set_rates,
    RecordCostRequested: record_cost,
})
