"""Finance rules: budgets, invoices, per-learner costs and the commitments of a session. Pure: no storage, no transport.

Vocabulary
- A *budget* is money allocated to a cost centre for a period (a calendar year ``YYYY``). Allocations add up; the
  first allocation of a cost centre + period fixes its currency.
- A *commitment* is a planned cost (``kind=committed``): the planned costs of a session and the per-learner costs
  of its enrolled learners. An *actual* cost (``kind=actual``) is an invoice.
- Nothing is ever changed or deleted: a commitment that no longer holds is *reversed* by a ``CostIncurred`` with
  the negated amount that names it in ``reverses`` (in the period and cost centre of the original).

Money is ``Decimal`` rounded to cents (half up), never float.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from shared.contracts.base import Money
from shared.contracts.finance import (
    BudgetAllocated,
    CostIncurred,
    CostPolicySet,
    CostReason,
    PerLearnerRate,
)
from shared.contracts.scheduling import PlannedCost, SessionPlan, TimeSlot
from shared.errors import Conflict, Invalid

CENT = Decimal("0.01")
MAX_INVOICE = Decimal("10000000")
MAX_ALLOCATION = Decimal("1000000000")  # one allocation: a budget larger than this is a typo, not a plan
# fixed namespace of finance's deterministic cost ids (never change it: replays must produce the same ids)
COST_ID_NAMESPACE = uuid.UUID("6f1c2a52-4a8e-4f57-9f55-2f0c1d7e9b31")

CommitmentReason = Literal["planned_cost", "per_learner"]
SeatStatus = Literal["enrolled", "waitlisted", "cancelled"]


# money ---------------------------------------------------------------------------------------------------------
def cents(value: Decimal) -> Decimal:
    """Round to cents, half up (0.005 -> 0.01)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def money(amount: Decimal | str, currency: str) -> Money:
    return Money(amount=cents(Decimal(amount)), currency=currency)


def check_budget_currency(budget_currency: str | None, amount: Money, field: str = "amount.currency") -> None:
    """Currency rule: a cost centre's budget for a period is kept in one currency, fixed by its first allocation;
    later allocations and the invoices booked against it must be in that currency."""
    if budget_currency is not None and amount.currency != budget_currency:
        raise Invalid(
            field,
            f"the budget of this cost centre and period is kept in {budget_currency}: amounts in "
            f"{amount.currency} cannot be booked against it (amounts must be in the budget's currency)",
            code="currency_mismatch",
        )


def check_allocation(amount: Money) -> None:
    if amount.amount <= 0:
        raise Invalid("amount.amount", "a budget allocation must be greater than zero")
    if amount.amount > MAX_ALLOCATION:
        raise Invalid("amount.amount", f"a budget allocation above {MAX_ALLOCATION:,} is not plausible")


def check_invoice_amount(amount: Money, credit_note: bool) -> None:
    """Rules of an invoice amount.

    - never zero, and at most 10,000,000 in absolute value (anything larger is a typo, not an invoice);
    - a positive amount is an invoice; a *negative* amount is a credit note and must say ``credit_note: true``
      (so that a forgotten minus sign or a stray one is caught), and ``credit_note: true`` needs a negative amount;
    - a credit note may not take the actual cost of the cost centre + period below zero (see
      ``CostCentre.record_invoice``).
    """
    if amount.amount == 0:
        raise Invalid("amount.amount", "an invoice of zero records nothing")
    if abs(amount.amount) > MAX_INVOICE:
        raise Invalid("amount.amount", f"an invoice above {MAX_INVOICE:,} in absolute value is not plausible")
    if amount.amount < 0 and not credit_note:
        raise Invalid("amount.amount", "a negative amount is a credit note: send credit_note=true with it")
    if amount.amount > 0 and credit_note:
        raise Invalid("amount.amount", "a credit note has a negative amount")


def cost_id(cause_id: str, index: int) -> str:
    """Deterministic id of the ``index``-th cost caused by event ``cause_id``: a replay produces the same ids."""
    return str(uuid.uuid5(COST_ID_NAMESPACE, f"{cause_id}:{index}"))


def invoice_cost_id(invoice_ref: str) -> str:
    return str(uuid.uuid5(COST_ID_NAMESPACE, f"invoice:{invoice_ref}"))


# time ----------------------------------------------------------------------------------------------------------
def period_of(starts_at: datetime, time_zone: str) -> str:
    """The budget period (calendar year) of a session: the year of its start in the session's time zone."""
    return f"{starts_at.astimezone(ZoneInfo(time_zone)).year:04d}"


def local_dates(slots: Iterable[TimeSlot], time_zone: str) -> set[date]:
    """Every local date (in ``time_zone``) a slot covers. A slot ending exactly at midnight does not cover the
    next day; a slot running past midnight covers both dates."""
    zone = ZoneInfo(time_zone)
    dates: set[date] = set()
    for slot in slots:
        day = slot.starts_at.astimezone(zone).date()
        last = (slot.ends_at - timedelta(microseconds=1)).astimezone(zone).date()
        while day <= last:
            dates.add(day)
            day += timedelta(days=1)
    return dates


def teaching_days(slots: Sequence[TimeSlot], time_zone: str) -> int:
    """Number of distinct local dates of the session's slots (what per-day rates are multiplied by)."""
    return len(local_dates(slots, time_zone))


def per_learner_amount(rate: PerLearnerRate, days: int) -> Money:
    """What one learner costs under ``rate``: amount x teaching days (per day) or the amount once (per session)."""
    factor = days if rate.per == "day" else 1
    return Money(amount=cents(rate.amount.amount * factor), currency=rate.amount.currency)


# the cost centre (write side of budgets, rates and invoices) --------------------------------------------------
def check_rates(rates: Sequence[PerLearnerRate]) -> None:
    seen: set[str] = set()
    for n, rate in enumerate(rates):
        if rate.amount.amount <= 0:
            raise Invalid(f"rates.{n}.amount.amount", "a per-learner rate must be greater than zero")
        if rate.amount.amount > MAX_INVOICE:
            raise Invalid(f"rates.{n}.amount.amount", f"a per-learner rate above {MAX_INVOICE:,} is not plausible")
        if rate.category in seen:
            raise Invalid(f"rates.{n}.category", f"category {rate.category!r} is listed twice")
        seen.add(rate.category)


@dataclass
class CostCentre:
    """Budgets, rates and invoices of one cost centre, rebuilt from its own events."""

    cost_centre: str
    version: int = 0
    budgets: dict[str, Money] = field(default_factory=dict)  # period -> allocated (in the budget's currency)
    actual: dict[str, Decimal] = field(default_factory=dict)  # period -> invoiced (budget currency)
    rates: list[PerLearnerRate] = field(default_factory=list)

    @classmethod
    def from_events(cls, cost_centre: str, events: Iterable[object]) -> CostCentre:
        centre = cls(cost_centre)
        for event in events:
            centre.apply(event)
        return centre

    def apply(self, event: object) -> None:
        self.version += 1
        if isinstance(event, BudgetAllocated):
            current = self.budgets.get(event.period)
            self.budgets[event.period] = event.amount if current is None else current + event.amount
        elif isinstance(event, CostPolicySet):
            self.rates = list(event.rates)
        elif isinstance(event, CostIncurred) and event.kind == "actual":
            self.actual[event.period] = self.actual.get(event.period, Decimal("0")) + event.amount.amount

    def snapshot(self) -> dict[str, object]:
        """The state as a JSON-ready document (kept beside the stream so a load replays only newer events)."""
        return {
            "version": self.version,
            "budgets": {p: m.model_dump(mode="json") for p, m in self.budgets.items()},
            "actual": {p: str(a) for p, a in self.actual.items()},
            "rates": [r.model_dump(mode="json") for r in self.rates],
        }

    @classmethod
    def from_snapshot(cls, cost_centre: str, doc: dict[str, object] | None, events: Iterable[object]) -> CostCentre:
        centre = cls(cost_centre)
        if doc is not None:
            centre.version = int(doc["version"])  # type: ignore[arg-type]
            centre.budgets = {p: Money.model_validate(m) for p, m in doc["budgets"].items()}  # type: ignore[union-attr]
            centre.actual = {p: Decimal(a) for p, a in doc["actual"].items()}  # type: ignore[union-attr]
            centre.rates = [PerLearnerRate.model_validate(r) for r in doc["rates"]]  # type: ignore[union-attr]
        for event in events:
            centre.apply(event)
        return centre

    def budget_currency(self, period: str) -> str | None:
        budget = self.budgets.get(period)
        return budget.currency if budget is not None else None

    def allocate(self, allocation_id: str, period: str, amount: Money, now: datetime) -> BudgetAllocated:
        check_allocation(amount)
        check_budget_currency(self.budget_currency(period), amount)
        amount = money(amount.amount, amount.currency)  # in cents: "1e3" is stored as "1000.00"
        return BudgetAllocated(occurred_at=now, allocation_id=allocation_id, cost_centre=self.cost_centre,
                               period=period, amount=amount)

    def set_rates(self, rates: Sequence[PerLearnerRate], now: datetime) -> CostPolicySet:
        check_rates(rates)
        return CostPolicySet(occurred_at=now, cost_centre=self.cost_centre, rates=list(rates))

    def record_invoice(self, invoice_ref: str, period: str, category: str, amount: Money, session_id: str | None,
                       credit_note: bool, now: datetime) -> CostIncurred:
        check_invoice_amount(amount, credit_note)
        if not self.budgets:
            raise Invalid("cost_centre", f"unknown cost centre {self.cost_centre!r}: it has no budget in any "
                          "period; allocate one first (POST /budgets)", code="unknown_cost_centre")
        if period not in self.budgets:
            raise Invalid("period", f"cost centre {self.cost_centre!r} has no budget for {period} (it has: "
                          f"{', '.join(sorted(self.budgets))}); allocate one first (POST /budgets)",
                          code="unknown_cost_centre_period")
        check_budget_currency(self.budget_currency(period), amount)
        if credit_note:
            spent = self.actual.get(period, Decimal("0"))
            if spent + amount.amount < 0:
                raise Invalid("amount.amount", f"a credit note cannot take the actual cost of {period} below zero "
                              f"(invoiced so far: {spent} {amount.currency})")
        return CostIncurred(occurred_at=now, cost_id=invoice_cost_id(invoice_ref), cost_centre=self.cost_centre,
                            period=period, kind="actual", reason="invoice", category=category, amount=amount,
                            session_id=session_id, invoice_ref=invoice_ref)


def _differing(stored: dict[str, object], candidate: dict[str, object]) -> list[str]:
    return sorted(k for k in candidate if stored.get(k) != candidate[k])


def same_allocation(stored: dict[str, object], candidate: dict[str, object]) -> None:
    """Idempotency of budget allocations by client-chosen ``allocation_id``: the same content again is fine
    (nothing more is allocated), other content is a conflict naming the fields that differ."""
    differing = _differing(stored, candidate)
    if differing:
        raise Conflict(
            f"allocation {candidate.get('allocation_id')} was already made with other content "
            f"(differs in: {', '.join(differing)}); allocations cannot be changed, use another allocation_id "
            "to add to a budget",
            code="allocation_exists",
            details={"allocation_id": candidate.get("allocation_id"), "differing_fields": differing},
        )


def same_invoice(stored: dict[str, object], candidate: dict[str, object]) -> None:
    """Idempotency of invoices by ``invoice_ref``: the same content again is fine, other content is a conflict."""
    differing = _differing(stored, candidate)
    if differing:
        raise Conflict(
            f"invoice {candidate.get('invoice_ref')} was already recorded with other content "
            f"(differs in: {', '.join(differing)})",
            code="invoice_exists",
            details={"differing_fields": differing},
        )


# the costs of a session ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cause:
    """The consumed event a cost is caused by: its id seeds the cost ids, its time is the business time."""

    event_id: str
    occurred_at: datetime


@dataclass(frozen=True)
class Commitment:
    """A cost a session should carry, identified within the session by ``key``."""

    key: str
    cost_centre: str
    period: str
    category: str
    amount: Money
    reason: CommitmentReason
    enrollment_id: str | None = None

    def same_cost(self, other: Commitment) -> bool:
        return (self.cost_centre, self.period, self.category, self.amount) == (
            other.cost_centre, other.period, other.category, other.amount)


@dataclass(frozen=True)
class OpenCommitment:
    """A commitment that was booked (``cost_id``) and has not been reversed."""

    cost_id: str
    commitment: Commitment


@dataclass(frozen=True)
class SessionFacts:
    """What finance needs to know of a session (from scheduling's events)."""

    cost_centre: str
    period: str
    teaching_days: int
    planned_costs: tuple[PlannedCost, ...]
    cancelled: bool = False

    @classmethod
    def from_plan(cls, plan: SessionPlan) -> SessionFacts:
        return cls(cost_centre=plan.cost_centre, period=period_of(plan.starts_at, plan.time_zone),
                   teaching_days=teaching_days(plan.slots, plan.time_zone), planned_costs=tuple(plan.planned_costs))


@dataclass(frozen=True)
class Seat:
    """An enrollment as finance sees it; ``rates`` are the per-learner rates in force when it was enrolled."""

    status: SeatStatus
    rates: tuple[PerLearnerRate, ...] = ()


def _numbered(prefix: str, parts: Iterable[tuple[str, ...]]) -> list[str]:
    counts: Counter[tuple[str, ...]] = Counter()
    keys = []
    for part in parts:
        keys.append(f"{prefix}:{':'.join(part)}:{counts[part]}")
        counts[part] += 1
    return keys


@dataclass
class SessionCosts:
    """The commitments of one session. Every change is a reconciliation: work out what the session should carry
    now, keep what is booked and still right, reverse what no longer holds, commit what is missing."""

    session_id: str
    facts: SessionFacts | None = None
    seats: dict[str, Seat] = field(default_factory=dict)
    open: dict[str, OpenCommitment] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.facts is not None

    # what the session should carry ------------------------------------------------------------------------
    def planned(self) -> list[Commitment]:
        facts = self.facts
        if facts is None or facts.cancelled:
            return []
        keys = _numbered("planned", ((c.cost_centre, c.category) for c in facts.planned_costs))
        return [
            Commitment(key=key, cost_centre=c.cost_centre, period=facts.period, category=c.category,
                       amount=money(c.amount.amount, c.amount.currency), reason="planned_cost")
            for key, c in zip(keys, facts.planned_costs, strict=True)
            if c.amount.amount != 0
        ]

    def per_learner(self, enrollment_id: str) -> list[Commitment]:
        facts = self.facts
        seat = self.seats.get(enrollment_id)
        if facts is None or facts.cancelled or seat is None or seat.status != "enrolled":
            return []
        keys = _numbered(f"learner:{enrollment_id}", ((r.category,) for r in seat.rates))
        return [
            Commitment(key=key, cost_centre=facts.cost_centre, period=facts.period, category=rate.category,
                       amount=per_learner_amount(rate, facts.teaching_days), reason="per_learner",
                       enrollment_id=enrollment_id)
            for key, rate in zip(keys, seat.rates, strict=True)
        ]

    def desired(self) -> list[Commitment]:
        out = self.planned()
        for enrollment_id in self.seats:
            out += self.per_learner(enrollment_id)
        return out

    def committed(self) -> dict[str, Decimal]:
        """Open committed amount per currency (0 after a cancellation)."""
        totals: dict[str, Decimal] = {}
        for entry in self.open.values():
            amount = entry.commitment.amount
            totals[amount.currency] = totals.get(amount.currency, Decimal("0")) + amount.amount
        return totals

    # changes -------------------------------------------------------------------------------------------------
    def schedule(self, plan: SessionPlan, cause: Cause) -> list[CostIncurred]:
        """``SessionScheduled`` or ``SessionRescheduled``: commit what is new, reverse what changed (in amount,
        period or cost centre); nothing when neither the period, the teaching days nor the costs changed."""
        facts = SessionFacts.from_plan(plan)
        if self.facts is not None and self.facts.cancelled:
            facts = replace(facts, cancelled=True)  # a cancelled session stays cancelled
        self.facts = facts
        return self._reconcile(self.desired(), cause, "session_rescheduled")

    def cancel(self, cause: Cause) -> list[CostIncurred]:
        """``SessionCancelled``: reverse every open commitment (planned and per learner)."""
        if self.facts is not None:
            self.facts = replace(self.facts, cancelled=True)
        return self._reconcile([], cause, "session_cancelled")

    def enroll(self, enrollment_id: str, rates_in_force: Sequence[PerLearnerRate], cause: Cause) -> list[CostIncurred]:
        """``LearnerEnrolled``: per-learner commitments at the rates in force now. An enrollment already holding a
        seat keeps the rates it was enrolled with."""
        seat = self.seats.get(enrollment_id)
        if seat is None or seat.status != "enrolled":
            self.seats[enrollment_id] = Seat("enrolled", tuple(rates_in_force))
        return self._reconcile(self.per_learner(enrollment_id), cause, "enrollment_cancelled",
                               scope=f"learner:{enrollment_id}:")

    def waitlist(self, enrollment_id: str) -> list[CostIncurred]:
        """``LearnerWaitlisted``: no cost."""
        self.seats.setdefault(enrollment_id, Seat("waitlisted"))
        return []

    def cancel_enrollment(self, enrollment_id: str, cause: Cause) -> list[CostIncurred]:
        """``EnrollmentCancelled``: reverse the enrollment's open per-learner commitments (none left when the
        session cancellation reversed them already)."""
        self.seats[enrollment_id] = Seat("cancelled")
        return self._reconcile([], cause, "enrollment_cancelled", scope=f"learner:{enrollment_id}:")

    def _reconcile(self, desired: list[Commitment], cause: Cause, reversal_reason: CostReason,
                   scope: str = "") -> list[CostIncurred]:
        wanted = {c.key: c for c in desired}
        events: list[CostIncurred] = []
        for key, booked in list(self.open.items()):
            if not key.startswith(scope):
                continue
            target = wanted.get(key)
            if target is None or not target.same_cost(booked.commitment):
                events.append(self._reversal(booked, cost_id(cause.event_id, len(events)), reversal_reason, cause))
                del self.open[key]
        for commitment in desired:
            if commitment.key not in self.open:
                new_id = cost_id(cause.event_id, len(events))
                events.append(self._commit(commitment, new_id, cause))
                self.open[commitment.key] = OpenCommitment(new_id, commitment)
        return events

    def _commit(self, c: Commitment, new_id: str, cause: Cause) -> CostIncurred:
        return CostIncurred(occurred_at=cause.occurred_at, cost_id=new_id, cost_centre=c.cost_centre,
                            period=c.period, kind="committed", reason=c.reason, category=c.category,
                            amount=c.amount, session_id=self.session_id, enrollment_id=c.enrollment_id)

    def _reversal(self, booked: OpenCommitment, new_id: str, reason: CostReason, cause: Cause) -> CostIncurred:
        c = booked.commitment
        return CostIncurred(occurred_at=cause.occurred_at, cost_id=new_id, cost_centre=c.cost_centre,
                            period=c.period, kind="committed", reason=reason, category=c.category,
                            amount=-c.amount, session_id=self.session_id, enrollment_id=c.enrollment_id,
                            reverses=booked.cost_id)
