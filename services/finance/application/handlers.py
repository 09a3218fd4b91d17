"""Command handlers: load the cost centre from its events, decide, store events + outbox + read models in one
transaction."""

from __future__ import annotations

import uuid
from typing import Any

from shared.commands import Trace, retry_on_concurrency
from shared.store.port import Store, UnitOfWork

from ..adapters.documents import cost_centre_stream, save_rates
from ..domain.model import CostCentre, cents, same_allocation, same_invoice
from ..projections import ledger
from .commands import AllocateBudget, RecordCost, SetPerLearnerRates

INVOICES = "invoices"  # one document per invoice_ref: what was recorded (idempotency of POST /costs)
ALLOCATIONS = "allocations"  # one document per allocation_id: what was allocated (idempotency of POST /budgets)


SNAPSHOTS = "cost-centre-snapshots"  # the state of each cost centre's stream at a version, same transaction


async def _load(uow: UnitOfWork, cost_centre: str) -> CostCentre:
    """Snapshot + the events after it: loading stays cheap however many invoices a cost centre has."""
    snapshot = await uow.get(SNAPSHOTS, cost_centre)
    after = int(snapshot["version"]) if snapshot else 0
    recorded = await uow.read_stream(cost_centre_stream(cost_centre), after_version=after)
    return CostCentre.from_snapshot(cost_centre, snapshot, [r.envelope.data for r in recorded])


async def _append(uow: UnitOfWork, centre: CostCentre, event: Any, trace: Trace) -> None:
    await uow.append(cost_centre_stream(centre.cost_centre), centre.version, [trace.envelope(event)])
    centre.apply(event)
    await uow.put(SNAPSHOTS, centre.cost_centre, centre.snapshot())


def _allocation_content(cmd: AllocateBudget, allocation_id: str) -> dict[str, Any]:
    """What makes an allocation the same one again (its business time, as_of, does not)."""
    return {
        "allocation_id": allocation_id,
        "cost_centre": cmd.cost_centre,
        "period": cmd.period,
        "amount": {"amount": str(cents(cmd.amount.amount)), "currency": cmd.amount.currency},  # 100 == 100.00
    }


async def decide_allocation(uow: UnitOfWork, cmd: AllocateBudget, trace: Trace,
                            allocation_id: str) -> tuple[dict[str, Any], bool]:
    """Allocate on a given unit of work (HTTP: its own transaction; Kafka: the consumer's). Writes only on success."""
    now, _ = cmd.effective_time()
    content = _allocation_content(cmd, allocation_id)
    existing = await uow.get(ALLOCATIONS, allocation_id)
    if existing is not None:
        same_allocation(existing["content"], content)
        return existing["allocation"], False
    centre = await _load(uow, cmd.cost_centre)
    event = centre.allocate(allocation_id, cmd.period, cmd.amount, now)
    await _append(uow, centre, event, trace)
    await ledger.record(uow, [event])
    allocation = {
        "allocation_id": allocation_id,
        "cost_centre": cmd.cost_centre,
        "period": cmd.period,
        "amount": event.amount.model_dump(mode="json"),
        "allocated": centre.budgets[cmd.period].model_dump(mode="json"),
        "allocated_at": now.isoformat(),
    }
    await uow.put(ALLOCATIONS, allocation_id, {"content": content, "allocation": allocation})
    return allocation, True


async def allocate_budget(store: Store, cmd: AllocateBudget, trace: Trace) -> tuple[dict[str, Any], bool]:
    """Returns (the allocation, created). With a client-chosen ``allocation_id`` the same allocation again returns
    the one made the first time (nothing more allocated); the same id with other content is a conflict."""
    cmd.effective_time()
    allocation_id = cmd.allocation_id or str(uuid.uuid4())

    async def attempt() -> tuple[dict[str, Any], bool]:
        async with store.transaction() as uow:
            return await decide_allocation(uow, cmd, trace, allocation_id)

    return await retry_on_concurrency(attempt)


async def decide_rates(uow: UnitOfWork, cost_centre: str, cmd: SetPerLearnerRates,
                       trace: Trace) -> tuple[dict[str, Any], bool]:
    now, _ = cmd.effective_time()
    centre = await _load(uow, cost_centre)
    event = centre.set_rates(cmd.rates, now)
    await _append(uow, centre, event, trace)
    await save_rates(uow, cost_centre, event.rates, now)
    await ledger.record(uow, [event])
    return {"cost_centre": cost_centre, "rates": [r.model_dump(mode="json") for r in event.rates],
            "set_at": now.isoformat()}, True


async def set_per_learner_rates(store: Store, cost_centre: str, cmd: SetPerLearnerRates,
                                trace: Trace) -> dict[str, Any]:
    cmd.effective_time()

    async def attempt() -> dict[str, Any]:
        async with store.transaction() as uow:
            return (await decide_rates(uow, cost_centre, cmd, trace))[0]

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


async def decide_cost(uow: UnitOfWork, cmd: RecordCost, trace: Trace) -> tuple[dict[str, Any], bool]:
    now, _ = cmd.effective_time()
    content = _invoice_content(cmd)
    existing = await uow.get(INVOICES, cmd.invoice_ref)
    if existing is not None:
        same_invoice(existing["content"], content)
        return existing["entry"], False
    centre = await _load(uow, cmd.cost_centre)
    event = centre.record_invoice(cmd.invoice_ref, cmd.period, cmd.category, cmd.amount, cmd.session_id,
                                  cmd.credit_note, now)
    await _append(uow, centre, event, trace)
    entry = {**ledger.entry_view(event), "credit_note": cmd.credit_note}
    await uow.put(INVOICES, cmd.invoice_ref, {"content": content, "entry": entry})
    await ledger.record(uow, [event])
    return entry, True


async def record_cost(store: Store, cmd: RecordCost, trace: Trace) -> tuple[dict[str, Any], bool]:
    """Returns (the cost entry, created). The same invoice again returns the entry recorded the first time."""
    cmd.effective_time()

    async def attempt() -> tuple[dict[str, Any], bool]:
        async with store.transaction() as uow:
            return await decide_cost(uow, cmd, trace)

    return await retry_on_concurrency(attempt)
