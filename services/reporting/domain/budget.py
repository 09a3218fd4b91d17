"""Budget lines: what a cost centre has, has committed and has spent in one period and currency. Pure.

One line per (cost_centre, period, currency), summed with ``Decimal`` (never float):

- ``allocated``: every ``BudgetAllocated`` (allocations add up).
- ``committed``: every ``CostIncurred`` of kind ``committed`` (planned costs, per-learner costs); reversals carry
  negative amounts and so lower it.
- ``actual``: every ``CostIncurred`` of kind ``actual`` (invoices), reversals likewise.
- ``remaining = allocated - max(committed, actual)``. Committed money is already promised and an invoice usually
  settles a commitment that was counted before, so adding both would count the same spending twice; taking the
  larger of the two counts what is promised until invoices overtake it, and real spending once they do (an
  invoice above its commitment, or an unplanned one). ``remaining`` is negative when the budget is overspent.

In JSON every amount is a string with two decimals ("1250.00").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from shared.contracts.finance import BudgetAllocated, CostIncurred

CENTS = Decimal("0.01")
BUDGET_EVENTS = (BudgetAllocated, CostIncurred)


def money_text(amount: Decimal) -> str:
    return str(amount.quantize(CENTS))


def remaining(allocated: Decimal, committed: Decimal, actual: Decimal) -> Decimal:
    return allocated - max(committed, actual)


@dataclass
class BudgetLine:
    cost_centre: str
    period: str
    currency: str
    allocated: Decimal = field(default_factory=Decimal)
    committed: Decimal = field(default_factory=Decimal)
    actual: Decimal = field(default_factory=Decimal)

    @staticmethod
    def key_of(event: BudgetAllocated | CostIncurred) -> tuple[str, str, str]:
        return event.cost_centre, event.period, event.amount.currency

    def apply(self, event: BudgetAllocated | CostIncurred) -> None:
        if self.key_of(event) != (self.cost_centre, self.period, self.currency):
            raise ValueError("the event belongs to another budget line")
        if isinstance(event, BudgetAllocated):
            self.allocated += event.amount.amount
        elif event.kind == "committed":
            self.committed += event.amount.amount
        else:
            self.actual += event.amount.amount

    @property
    def remaining(self) -> Decimal:
        return remaining(self.allocated, self.committed, self.actual)

    def view(self) -> dict[str, Any]:
        return {
            "cost_centre": self.cost_centre,
            "period": self.period,
            "currency": self.currency,
            "allocated": money_text(self.allocated),
            "committed": money_text(self.committed),
            "actual": money_text(self.actual),
            "remaining": money_text(self.remaining),
        }

    def to_document(self) -> dict[str, Any]:
        return {
            "cost_centre": self.cost_centre,
            "period": self.period,
            "currency": self.currency,
            "allocated": str(self.allocated),
            "committed": str(self.committed),
            "actual": str(self.actual),
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> BudgetLine:
        return cls(
            cost_centre=doc["cost_centre"],
            period=doc["period"],
            currency=doc["currency"],
            allocated=Decimal(doc["allocated"]),
            committed=Decimal(doc["committed"]),
            actual=Decimal(doc["actual"]),
        )

    @property
    def sort_key(self) -> tuple[str, str, str]:
        return self.cost_centre, self.period, self.currency
