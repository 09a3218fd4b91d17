"""Events published by the finance service on ``ilt.finance.events``.

A reversal is a ``CostIncurred`` with a negative amount that names the cost it ``reverses``.
Key: the session id for session costs, else the cost centre.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import IntegrationEvent, Money, published
from .topics import FINANCE_EVENTS

SOURCE = "/ilt/finance"
PERIOD_PATTERN = r"^\d{4}$"
CostKind = Literal["committed", "actual"]
CostReason = Literal[
    "planned_cost",
    "per_learner",
    "session_rescheduled",
    "session_cancelled",
    "enrollment_cancelled",
    "invoice",
]


@published
class BudgetAllocated(IntegrationEvent):
    """Money made available to a cost centre for a period (a calendar year, ``YYYY``). Allocations add up."""

    event_type: ClassVar[str] = "ilt.finance.budget-allocated.v1"
    topic: ClassVar[str] = FINANCE_EVENTS
    source: ClassVar[str] = SOURCE

    allocation_id: str
    cost_centre: str
    period: str = Field(pattern=PERIOD_PATTERN)
    amount: Money

    def aggregate_id(self) -> str:
        return self.cost_centre


@published
class CostIncurred(IntegrationEvent):
    """A change to what a cost centre has committed (planned) or actually spent (invoiced) in a period."""

    event_type: ClassVar[str] = "ilt.finance.cost-incurred.v1"
    topic: ClassVar[str] = FINANCE_EVENTS
    source: ClassVar[str] = SOURCE

    cost_id: str
    cost_centre: str
    period: str = Field(pattern=PERIOD_PATTERN)
    kind: CostKind
    reason: CostReason
    category: str
    amount: Money
    session_id: str | None = None
    enrollment_id: str | None = None
    invoice_ref: str | None = None
    reverses: str | None = Field(default=None, description="cost_id of the cost this entry reverses")

    def aggregate_id(self) -> str:
        return self.session_id or self.cost_centre


class PerLearnerRate(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    category: str = Field(min_length=1, max_length=64, examples=["catering"])
    amount: Money
    per: Literal["day", "session"] = Field(description="per learner per teaching day, or once per learner")


@published
class CostPolicySet(IntegrationEvent):
    """Per-learner rates a cost centre applies to enrollments from now on (replaces the previous rates)."""

    event_type: ClassVar[str] = "ilt.finance.cost-policy-set.v1"
    topic: ClassVar[str] = FINANCE_EVENTS
    source: ClassVar[str] = SOURCE

    cost_centre: str
    rates: list[PerLearnerRate]

    def aggregate_id(self) -> str:
        return self.cost_centre
