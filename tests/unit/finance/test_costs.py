"""Pure finance rules: per-learner amounts, teaching days, periods, reversals, the currency and invoice rules."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.finance.domain.model import (
    Cause,
    CostCentre,
    SessionCosts,
    cents,
    check_invoice_amount,
    cost_id,
    per_learner_amount,
    period_of,
    teaching_days,
)
from shared.contracts.base import Money
from shared.contracts.finance import PerLearnerRate
from shared.contracts.scheduling import SessionPlan, TimeSlot
from shared.errors import Invalid

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def eur(amount: str, currency: str = "EUR") -> Money:
    return Money(amount=Decimal(amount), currency=currency)


def slot(start: str, end: str) -> TimeSlot:
    return TimeSlot(starts_at=datetime.fromisoformat(start), ends_at=datetime.fromisoformat(end))


def plan(slots: list[TimeSlot], time_zone: str = "Europe/Berlin", planned: list[tuple[str, str]] = (),
         cost_centre: str = "CC-1") -> SessionPlan:
    return SessionPlan(course_code="SWC", title="Software Carpentry", delivery="classroom", venue_id="room-a",
                       time_zone=time_zone, slots=slots, capacity=10, cost_centre=cost_centre,
                       planned_costs=[{"category": c, "amount": eur(a), "cost_centre": cost_centre}
                                      for c, a in planned])


def rate(category: str, amount: str, per: str, currency: str = "EUR") -> PerLearnerRate:
    return PerLearnerRate(category=category, amount=eur(amount, currency), per=per)


# teaching days and periods ------------------------------------------------------------------------------------
def test_teaching_days_count_distinct_local_dates() -> None:
    two_blocks_one_day = [slot("2030-03-04T09:00+01:00", "2030-03-04T12:00+01:00"),
                          slot("2030-03-04T13:00+01:00", "2030-03-04T17:00+01:00")]
    assert teaching_days(two_blocks_one_day, "Europe/Berlin") == 1
    three_days_with_gap = [slot("2030-03-04T09:00+01:00", "2030-03-04T17:00+01:00"),
                           slot("2030-03-05T09:00+01:00", "2030-03-05T17:00+01:00"),
                           slot("2030-03-07T09:00+01:00", "2030-03-07T17:00+01:00")]
    assert teaching_days(three_days_with_gap, "Europe/Berlin") == 3


def test_teaching_days_are_counted_in_the_session_time_zone() -> None:
    # 23:30 UTC on the 10th and 08:00 UTC on the 11th: two UTC dates, but one day in Berlin (00:30 and 09:00)
    slots = [slot("2030-03-10T23:30+00:00", "2030-03-11T00:30+00:00"),
             slot("2030-03-11T08:00+00:00", "2030-03-11T12:00+00:00")]
    assert teaching_days(slots, "Europe/Berlin") == 1
    assert teaching_days(slots, "UTC") == 2
    # and the other way round: one UTC date, two dates in Los Angeles (UTC-7 in summer)
    west = [slot("2030-06-10T05:00+00:00", "2030-06-10T06:00+00:00"),
            slot("2030-06-10T16:00+00:00", "2030-06-10T18:00+00:00")]
    assert teaching_days(west, "UTC") == 1
    assert teaching_days(west, "America/Los_Angeles") == 2


def test_a_slot_past_midnight_covers_both_dates_one_ending_at_midnight_does_not() -> None:
    assert teaching_days([slot("2030-03-04T22:00+01:00", "2030-03-05T02:00+01:00")], "Europe/Berlin") == 2
    assert teaching_days([slot("2030-03-04T20:00+01:00", "2030-03-05T00:00+01:00")], "Europe/Berlin") == 1


def test_period_is_the_year_of_the_start_in_the_session_time_zone() -> None:
    new_years_eve_utc = datetime.fromisoformat("2030-12-31T23:30+00:00")
    assert period_of(new_years_eve_utc, "UTC") == "2030"
    assert period_of(new_years_eve_utc, "Europe/Berlin") == "2031"
    assert period_of(new_years_eve_utc, "America/New_York") == "2030"


# money ---------------------------------------------------------------------------------------------------------
def test_per_learner_amounts_per_day_and_per_session() -> None:
    assert per_learner_amount(rate("catering", "12.50", "day"), 3) == eur("37.50")
    assert per_learner_amount(rate("materials", "40.00", "session"), 3) == eur("40.00")
    assert per_learner_amount(rate("catering", "0.35", "day"), 7).amount == Decimal("2.45")
    assert per_learner_amount(rate("catering", "9.99", "day"), 5).amount.as_tuple().exponent == -2


def test_cents_round_half_up_and_stay_decimal() -> None:
    assert cents(Decimal("0.005")) == Decimal("0.01")
    assert cents(Decimal("2.675")) == Decimal("2.68")  # a float would give 2.67
    assert isinstance(cents(Decimal("1")), Decimal) and str(cents(Decimal("1"))) == "1.00"


def test_cost_ids_are_deterministic_per_cause_and_index() -> None:
    assert cost_id("event-1", 0) == cost_id("event-1", 0)
    assert len({cost_id("event-1", 0), cost_id("event-1", 1), cost_id("event-2", 0)}) == 3


# currency and invoice rules ------------------------------------------------------------------------------------
def test_first_allocation_fixes_the_currency_of_the_period() -> None:
    centre = CostCentre("CC-1")
    centre.apply(centre.allocate("a1", "2030", eur("1000.00"), NOW))
    centre.apply(centre.allocate("a2", "2030", eur("500.00"), NOW))
    assert centre.budgets["2030"] == eur("1500.00")
    with pytest.raises(Invalid) as err:
        centre.allocate("a3", "2030", eur("10.00", "USD"), NOW)
    assert err.value.details["detail"][0]["field"] == "amount.currency"
    assert "EUR" in err.value.message
    # another period has its own currency
    centre.apply(centre.allocate("a4", "2031", eur("10.00", "USD"), NOW))
    assert centre.budget_currency("2031") == "USD"


def test_invoices_must_be_in_the_budget_currency_and_need_a_budget() -> None:
    centre = CostCentre("CC-1")
    with pytest.raises(Invalid) as err:
        centre.record_invoice("INV-1", "2030", "venue", eur("10.00"), None, False, NOW)
    assert err.value.code == "unknown_cost_centre"
    centre.apply(centre.allocate("a1", "2030", eur("1000.00"), NOW))
    with pytest.raises(Invalid) as err:
        centre.record_invoice("INV-1", "2031", "venue", eur("10.00"), None, False, NOW)
    assert err.value.code == "unknown_cost_centre_period" and "2031" in err.value.message
    with pytest.raises(Invalid) as err:
        centre.record_invoice("INV-1", "2030", "venue", eur("10.00", "GBP"), None, False, NOW)
    assert err.value.details["detail"][0]["field"] == "amount.currency"
    assert "budget's currency" in err.value.message
    cost = centre.record_invoice("INV-1", "2030", "venue", eur("10.00"), "s1", False, NOW)
    assert (cost.kind, cost.reason, cost.amount, cost.session_id) == ("actual", "invoice", eur("10.00"), "s1")


@pytest.mark.parametrize(("amount", "credit_note", "reason"), [
    ("0.00", False, "zero"),
    ("10000000.01", False, "not plausible"),
    ("-10000000.01", True, "not plausible"),
    ("-5.00", False, "credit_note=true"),
    ("5.00", True, "negative amount"),
])
def test_invoice_amount_rules(amount: str, credit_note: bool, reason: str) -> None:
    with pytest.raises(Invalid) as err:
        check_invoice_amount(eur(amount), credit_note)
    assert reason in err.value.message


def test_invoice_amount_limits_are_inclusive() -> None:
    check_invoice_amount(eur("10000000.00"), False)
    check_invoice_amount(eur("-10000000.00"), True)
    check_invoice_amount(eur("0.01"), False)


def test_a_credit_note_cannot_take_the_actual_cost_below_zero() -> None:
    centre = CostCentre("CC-1")
    centre.apply(centre.allocate("a1", "2030", eur("1000.00"), NOW))
    centre.apply(centre.record_invoice("INV-1", "2030", "venue", eur("300.00"), None, False, NOW))
    with pytest.raises(Invalid) as err:
        centre.record_invoice("CN-1", "2030", "venue", eur("-300.01"), None, True, NOW)
    assert "below zero" in err.value.message
    credit = centre.record_invoice("CN-1", "2030", "venue", eur("-300.00"), None, True, NOW)
    assert credit.amount == eur("-300.00") and credit.kind == "actual"


# commitments and their reversal ----------------------------------------------------------------------------------
def test_reversals_negate_the_original_in_its_period_and_name_it() -> None:
    costs = SessionCosts("s1")
    booked = costs.schedule(plan([slot("2030-03-04T09:00+01:00", "2030-03-04T17:00+01:00")],
                                 planned=[("venue_hire", "500.00"), ("instructor_fee", "800.00")]),
                            Cause("ev-scheduled", NOW))
    booked += costs.enroll("e1", [rate("catering", "20.00", "day")], Cause("ev-enrolled", NOW))
    reversals = costs.cancel(Cause("ev-cancelled", NOW))
    assert {r.reverses for r in reversals} == {b.cost_id for b in booked}
    by_original = {r.reverses: r for r in reversals}
    for original in booked:
        reversal = by_original[original.cost_id]
        assert reversal.amount == -original.amount
        assert (reversal.period, reversal.cost_centre, reversal.category, reversal.enrollment_id) == (
            original.period, original.cost_centre, original.category, original.enrollment_id)
        assert reversal.reason == "session_cancelled" and reversal.kind == "committed"
    assert sum(e.amount.amount for e in booked + reversals) == 0
    assert costs.committed() == {}
    assert costs.cancel(Cause("ev-cancelled-again", NOW)) == []


def test_reschedule_with_the_same_days_period_and_costs_changes_nothing() -> None:
    costs = SessionCosts("s1")
    costs.schedule(plan([slot("2030-03-04T09:00+01:00", "2030-03-04T17:00+01:00")], planned=[("venue", "5.00")]),
                   Cause("ev-1", NOW))
    costs.enroll("e1", [rate("catering", "20.00", "day")], Cause("ev-2", NOW))
    later_same_day_count = plan([slot("2030-05-06T10:00+02:00", "2030-05-06T16:00+02:00")], planned=[("venue", "5.00")])
    assert costs.schedule(later_same_day_count, Cause("ev-3", NOW)) == []


def test_reschedule_to_more_days_re_costs_only_the_per_day_rates() -> None:
    costs = SessionCosts("s1")
    costs.schedule(plan([slot("2030-03-04T09:00+01:00", "2030-03-04T17:00+01:00")], planned=[("venue", "5.00")]),
                   Cause("ev-1", NOW))
    costs.enroll("e1", [rate("catering", "20.00", "day"), rate("book", "30.00", "session")], Cause("ev-2", NOW))
    two_days = plan([slot("2030-03-04T09:00+01:00", "2030-03-04T17:00+01:00"),
                     slot("2030-03-05T09:00+01:00", "2030-03-05T17:00+01:00")], planned=[("venue", "5.00")])
    changes = costs.schedule(two_days, Cause("ev-3", NOW))
    assert [(c.category, c.amount.amount, c.reason) for c in changes] == [
        ("catering", Decimal("-20.00"), "session_rescheduled"),
        ("catering", Decimal("40.00"), "per_learner"),
    ]
    assert costs.committed() == {"EUR": Decimal("75.00")}


def test_a_cancelled_session_stays_cancelled_and_costs_nothing_when_its_plan_changes() -> None:
    costs = SessionCosts("s1")
    one_day = plan([slot("2030-03-04T09:00+01:00", "2030-03-04T17:00+01:00")], planned=[("venue", "5.00")])
    costs.schedule(one_day, Cause("ev-1", NOW))
    costs.cancel(Cause("ev-2", NOW))
    assert costs.schedule(one_day, Cause("ev-3", NOW)) == []
    assert costs.enroll("e1", [rate("catering", "20.00", "day")], Cause("ev-4", NOW)) == []
    assert costs.committed() == {}


def test_snapshot_plus_later_events_equals_full_replay() -> None:
    from datetime import UTC, datetime

    from shared.contracts.finance import BudgetAllocated, CostIncurred, CostPolicySet

    from services.finance.domain.model import CostCentre

    now = datetime(2027, 1, 1, tzinfo=UTC)
    eur = {"currency": "EUR"}
    events = [
        BudgetAllocated(occurred_at=now, allocation_id="a1", cost_centre="CC", period="2027",
                        amount={"amount": "1000.00", **eur}),
        CostPolicySet(occurred_at=now, cost_centre="CC",
                      rates=[{"category": "catering", "amount": {"amount": "12.50", **eur}, "per": "day"}]),
        CostIncurred(occurred_at=now, cost_id="c1", cost_centre="CC", period="2027", kind="actual",
                     reason="invoice", category="venue", amount={"amount": "100.10", **eur}, invoice_ref="I1"),
        BudgetAllocated(occurred_at=now, allocation_id="a2", cost_centre="CC", period="2027",
                        amount={"amount": "500.00", **eur}),
        CostIncurred(occurred_at=now, cost_id="c2", cost_centre="CC", period="2027", kind="actual",
                     reason="invoice", category="venue", amount={"amount": "0.90", **eur}, invoice_ref="I2"),
    ]
    full = CostCentre.from_events("CC", events)
    for cut in range(len(events) + 1):
        snap = CostCentre.from_events("CC", events[:cut]).snapshot()
        resumed = CostCentre.from_snapshot("CC", snap, events[cut:])
        assert resumed.snapshot() == full.snapshot()
    assert full.snapshot()["actual"] == {"2027": "101.00"}
    assert full.version == 5


def test_finance_commands_refuse_unknown_currencies_and_implausible_periods() -> None:
    import pytest
    from pydantic import ValidationError

    from services.finance.application.commands import AllocateBudget, RecordCost, SetPerLearnerRates

    eur = {"amount": "10.00", "currency": "EUR"}
    AllocateBudget(cost_centre="CC", period="2027", amount=eur)
    for bad in ({"period": "0000"}, {"period": "9999"}, {"amount": {"amount": "10.00", "currency": "ZZZ"}}):
        with pytest.raises(ValidationError) as err:
            AllocateBudget(**{"cost_centre": "CC", "period": "2027", "amount": eur, **bad})
        assert err.value.errors()[0]["loc"][0] in ("period", "amount")
    with pytest.raises(ValidationError):
        RecordCost(invoice_ref="I", cost_centre="CC", period="2027", category="x",
                   amount={"amount": "1.00", "currency": "XXX"})
    with pytest.raises(ValidationError):
        SetPerLearnerRates(rates=[{"category": "c", "amount": {"amount": "1.00", "currency": "ABC"}, "per": "day"}])
