"""Command handlers: load the cost centre from its events, decide, store events + outbox + read models in one
transaction."""

from __future__ import annotations

import uuid
from typing import Any

from shared.commands import Trace, retry_on_concurrency
from shared.store.port import Store, UnitOfWork

from ..adapters.documents import cost_centre_stream, save_rates
from ..domain.model import CostCentre, same_invoice
from ..projections import ledger
from .commands import AllocateBudget, RecordCost, SetPerLearnerRates

INVOICES = "invoices"  # one document per invoice_ref: what was recorded (idempotency of POST /costs)


async def _load(uow: UnitOfWork, cost_centre: str) -> CostCentre:
    recorded = await uow.read_stream(cost_centre_stream(cost_centre))
    return CostCentre.from_events(cost_centre, [r.envelope.data for r in recorded])


async def allocate_budget(store: Store, cmd: AllocateBudget, trace: Trace) -> dict[str, Any]:
    now, _ = cmd.effective_time()
    allocation_id = str(uuid.uuid4())

    async def attempt() -> dict[str, Any]:
        async with store.transaction() as uow:
            centre = await _load(uow, cmd.cost_centre)
            event = centre.allocate(allocation_id, cmd.period, cmd.amount, now)
            await uow.append(cost_centre_stream(cmd.cost_centre), centre.version, [trace.envelope(event)])
            centre.apply(event)
            await ledger.record(uow, [event])
            return {
                "allocation_id": allocation_id,
                "cost_centre": cmd.cost_centre,
                "period": cmd.period,
                "amount": event.amount.model_dump(mode="json"),
                "allocated": centre.budgets[cmd.period].model_dump(mode="json"),
            }

    return await retry_on_concurrency(attempt)


async def set_per_learner_rates(store: Store, cost_centre: str, cmd: SetPerLearnerRates,
                                trace: Trace) -> dict[str, Any]:
    now, _ = cmd.effective_time()

    async def attempt() -> dict[str, Any]:
        async with store.transaction() as uow:
            centre = await _load(uow, cost_centre)
            event = centre.set_rates(cmd.rates, now)
            await uow.append(cost_centre_stream(cost_centre), centre.version, [trace.envelope(event)])
            await save_rates(uow, cost_centre, event.rates, now)
            await ledger.record(uow, [event])
            return {"cost_centre": cost_centre, "rates": [r.model_dump(mode="json") for r in event.rates],
                    "set_at": now.isoformat()}

    return await retry_on_concurrency(attempt)


def _invoice_content(cmd: RecordCost) -> dict[str, Any]:
    return {
        "invoice_ref": cmd.invoice_ref,
        "cost_centre": cmd.cost_centre,
        "period": cmd.period,
        "category": cmd.category,
        "amount": cmd.amount.model_dump(mode="json"),
        "session_id": cmd.session_id,
        "credit_note": cmd.credit_note,
    }


async def record_cost(store: Store, cmd: RecordCost, trace: Trace) -> tuple[dict[str, Any], bool]:
    """Returns (the cost entry, created). The same invoice again returns the entry recorded the first time."""
    now, _ = cmd.effective_time()
    content = _invoice_content(cmd)

    async def attempt() -> tuple[dict[str, Any], bool]:
        async with store.transaction() as uow:
            existing = await uow.get(INVOICES, cmd.invoice_ref)
            if existing is not None:
                same_invoice(existing["content"], content)
                return existing["entry"], False
            centre = await _load(uow, cmd.cost_centre)
            event = centre.record_invoice(cmd.invoice_ref, cmd.period, cmd.category, cmd.amount, cmd.session_id,
                                          cmd.credit_note, now)
            await uow.append(cost_centre_stream(cmd.cost_centre), centre.version, [trace.envelope(event)])
            entry = {**ledger.entry_view(event), "credit_note": cmd.credit_note}
            await uow.put(INVOICES, cmd.invoice_ref, {"content": content, "entry": entry})
            await ledger.record(uow, [event])
            return entry, True

    return await retry_on_concurrency(attempt)
