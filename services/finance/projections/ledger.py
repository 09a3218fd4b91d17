"""Read models of the finance API, updated in the same transaction as the events that change them.

- ``cost-centres/<cc>``: budgets per period (currency, allocated) and committed/actual totals per
  (period, currency), the rates in force;
- ``ledger:<cc>/<seq>``: every cost entry of the cost centre, in the order it was booked;
- ``session-costs:<session_id>/<seq>``: every cost entry naming the session.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from shared.contracts.base import IntegrationEvent
from shared.contracts.finance import BudgetAllocated, CostIncurred, CostPolicySet
from shared.store.port import Store, UnitOfWork

COST_CENTRES = "cost-centres"
COUNTERS = "counters"
ZERO = Decimal("0.00")


def ledger_of(cost_centre: str) -> str:
    return f"ledger:{cost_centre}"


def session_ledger_of(session_id: str) -> str:
    return f"session-costs:{session_id}"


def entry_view(event: CostIncurred) -> dict[str, Any]:
    return {
        "cost_id": event.cost_id,
        "occurred_at": event.occurred_at.isoformat(),
        "cost_centre": event.cost_centre,
        "period": event.period,
        "kind": event.kind,
        "reason": event.reason,
        "category": event.category,
        "amount": event.amount.model_dump(mode="json"),
        "session_id": event.session_id,
        "enrollment_id": event.enrollment_id,
        "invoice_ref": event.invoice_ref,
        "reverses": event.reverses,
    }


def _empty(cost_centre: str) -> dict[str, Any]:
    return {"cost_centre": cost_centre, "budgets": {}, "totals": {}, "rates": []}


async def record(uow: UnitOfWork, events: list[IntegrationEvent]) -> None:
    """Apply finance's own new events to the read models."""
    if not events:
        return
    counter = await uow.get(COUNTERS, "ledger") or {"seq": 0}
    centres: dict[str, dict[str, Any]] = {}

    async def centre(cc: str) -> dict[str, Any]:
        if cc not in centres:
            centres[cc] = await uow.get(COST_CENTRES, cc) or _empty(cc)
        return centres[cc]

    for event in events:
        if isinstance(event, BudgetAllocated):
            doc = await centre(event.cost_centre)
            budget = doc["budgets"].setdefault(
                event.period, {"currency": event.amount.currency, "allocated": str(ZERO), "allocations": 0})
            budget["allocated"] = str(Decimal(budget["allocated"]) + event.amount.amount)
            budget["allocations"] += 1
        elif isinstance(event, CostPolicySet):
            doc = await centre(event.cost_centre)
            doc["rates"] = [r.model_dump(mode="json") for r in event.rates]
            doc["rates_set_at"] = event.occurred_at.isoformat()
        elif isinstance(event, CostIncurred):
            doc = await centre(event.cost_centre)
            totals = doc["totals"].setdefault(
                f"{event.period}|{event.amount.currency}", {"committed": str(ZERO), "actual": str(ZERO)})
            totals[event.kind] = str(Decimal(totals[event.kind]) + event.amount.amount)
            counter["seq"] += 1
            key = f"{counter['seq']:012d}"
            view = entry_view(event)
            await uow.put(ledger_of(event.cost_centre), key, view)
            if event.session_id:
                await uow.put(session_ledger_of(event.session_id), key, view)
    for cc, doc in centres.items():
        await uow.put(COST_CENTRES, cc, doc)
    await uow.put(COUNTERS, "ledger", counter)


async def cost_centre_view(store: Store, cost_centre: str) -> dict[str, Any] | None:
    doc = await store.get(COST_CENTRES, cost_centre)
    if doc is None:
        return None
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for period, budget in doc["budgets"].items():
        rows[(period, budget["currency"])] = {"allocated": Decimal(budget["allocated"]),
                                              "allocations": budget["allocations"]}
    for key, totals in doc["totals"].items():
        period, currency = key.split("|")
        row = rows.setdefault((period, currency), {"allocated": ZERO, "allocations": 0})
        row["committed"] = Decimal(totals["committed"])
        row["actual"] = Decimal(totals["actual"])
    budgets = []
    for (period, currency), row in sorted(rows.items()):
        committed, actual = row.get("committed", ZERO), row.get("actual", ZERO)
        budget_currency = doc["budgets"].get(period, {}).get("currency")
        budgets.append({
            "period": period,
            "currency": currency,
            "budget_currency": budget_currency,
            "allocated": str(row["allocated"]),
            "allocations": row["allocations"],
            "committed": str(committed),
            "actual": str(actual),
            "remaining": str(row["allocated"] - max(committed, actual)),
        })
    ledger = [entry for _, entry in await store.scan(ledger_of(cost_centre))]
    return {"cost_centre": cost_centre, "budgets": budgets, "rates": doc["rates"],
            "rates_set_at": doc.get("rates_set_at"), "ledger": ledger, "entries": len(ledger)}


async def session_entries(store: Store, session_id: str) -> list[dict[str, Any]]:
    return [entry for _, entry in await store.scan(session_ledger_of(session_id))]
