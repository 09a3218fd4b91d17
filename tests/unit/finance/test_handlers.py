"""Finance's command handlers and policies against a real SQLite store, driven by envelopes of the real contracts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from structlog.testing import capture_logs

from services.finance.application import handlers
from services.finance.application.commands import AllocateBudget, RecordCost, SetPerLearnerRates
from services.finance.application.policies import HANDLERS
from services.finance.projections.ledger import cost_centre_view, session_entries
from shared.commands import Trace
from shared.contracts.base import IntegrationEvent, catalogue
from shared.contracts.enrollment import EnrollmentCancelled, LearnerEnrolled, LearnerWaitlisted
from shared.contracts.finance import BudgetAllocated, CostIncurred, CostPolicySet
from shared.contracts.scheduling import SessionCancelled, SessionRescheduled, SessionScheduled
from shared.errors import Conflict, Invalid
from shared.messaging.envelope import Envelope
from shared.store.sqlite import SQLiteStore

NOW = datetime(2030, 1, 1, tzinfo=UTC)
TRACE = Trace()


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "finance.db"))
    await s.open()
    yield s
    await s.close()


def money(amount: str, currency: str = "EUR") -> dict[str, str]:
    return {"amount": amount, "currency": currency}


def plan(**overrides: Any) -> dict[str, Any]:
    data = {
        "course_code": "SWC", "title": "Software Carpentry", "delivery": "classroom", "venue_id": "room-a",
        "time_zone": "Europe/Berlin", "capacity": 2, "cost_centre": "CC-1",
        "slots": [{"starts_at": "2030-03-04T09:00:00+01:00", "ends_at": "2030-03-04T17:00:00+01:00"},
                  {"starts_at": "2030-03-05T09:00:00+01:00", "ends_at": "2030-03-05T17:00:00+01:00"}],
        "planned_costs": [{"category": "venue_hire", "amount": money("500.00"), "cost_centre": "CC-1"},
                          {"category": "instructor_fee", "amount": money("1200.00"), "cost_centre": "CC-TRAINERS"}],
    }
    data.update(overrides)
    return data


def scheduled(session_id: str = "s1", **overrides: Any) -> SessionScheduled:
    return SessionScheduled(occurred_at=NOW, session_id=session_id, **plan(**overrides))


def rescheduled(session_id: str = "s1", **overrides: Any) -> SessionRescheduled:
    return SessionRescheduled(occurred_at=NOW, session_id=session_id, **plan(**overrides))


def learner(n: int, session_id: str = "s1") -> dict[str, Any]:
    return {"occurred_at": NOW, "enrollment_id": f"e{n}", "session_id": session_id, "learner_id": f"learner-{n}"}


async def consume(store: SQLiteStore, event: IntegrationEvent, event_id: str | None = None) -> Envelope:
    """What the consumer does with one event: claim it and run finance's handler, in one transaction."""
    envelope = Envelope(data=event, **({"id": event_id} if event_id else {}))
    async with store.transaction() as uow:
        assert await uow.claim("finance", envelope.id)
        await HANDLERS[type(event)](uow, envelope)
    return envelope


async def published(store: SQLiteStore) -> list[tuple[IntegrationEvent, str | None]]:
    """Every event finance queued for publication, with its causation id."""
    out = []
    for entry in await store.pending_outbox(100_000):
        headers = dict(entry.headers)
        out.append((catalogue.resolve(entry.event_type).model_validate_json(entry.value),
                    headers.get("ce_causationid", b"").decode() or None))
    return out


async def costs(store: SQLiteStore) -> list[CostIncurred]:
    return [e for e, _ in await published(store) if isinstance(e, CostIncurred)]


async def set_rates(store: SQLiteStore, *rates: tuple[str, str, str], cost_centre: str = "CC-1") -> None:
    cmd = SetPerLearnerRates(rates=[{"category": c, "amount": money(a), "per": p} for c, a, p in rates])
    await handlers.set_per_learner_rates(store, cost_centre, cmd, TRACE)


def row(view: dict[str, Any], period: str, currency: str = "EUR") -> dict[str, Any]:
    return next(b for b in view["budgets"] if b["period"] == period and b["currency"] == currency)


# commands ------------------------------------------------------------------------------------------------------
async def test_allocations_add_up_and_the_first_fixes_the_currency(store: SQLiteStore) -> None:
    first, _ = await handlers.allocate_budget(store, AllocateBudget(cost_centre="CC-1", period="2030",
                                                                 amount=money("1000.00")), TRACE)
    second, _ = await handlers.allocate_budget(store, AllocateBudget(cost_centre="CC-1", period="2030",
                                                                  amount=money("250.50")), TRACE)
    assert first["allocation_id"] != second["allocation_id"]
    assert second["allocated"] == money("1250.50")
    stored = await store.event_count()
    with pytest.raises(Invalid) as err:
        await handlers.allocate_budget(store, AllocateBudget(cost_centre="CC-1", period="2030",
                                                             amount=money("10.00", "USD")), TRACE)
    assert err.value.body()["detail"][0]["field"] == "amount.currency"
    with pytest.raises(Invalid):
        await handlers.allocate_budget(store, AllocateBudget(cost_centre="CC-1", period="2030",
                                                             amount=money("0.00")), TRACE)
    assert await store.event_count() == stored  # rejected commands write nothing
    view = await cost_centre_view(store, "CC-1")
    assert row(view, "2030") == {
        "period": "2030", "currency": "EUR", "budget_currency": "EUR", "allocated": "1250.50", "allocations": 2,
        "committed": "0.00", "actual": "0.00", "remaining": "1250.50"}
    events = [e for e, _ in await published(store)]
    assert [type(e) for e in events] == [BudgetAllocated, BudgetAllocated]
    assert sum(e.amount.amount for e in events) == Decimal("1250.50")


async def test_allocation_with_a_client_chosen_id_is_idempotent(store: SQLiteStore) -> None:
    cmd = AllocateBudget(allocation_id="budget-CC-1-2030", cost_centre="CC-1", period="2030",
                         amount=money("1000.00"))
    first, created = await handlers.allocate_budget(store, cmd, TRACE)
    assert created and first["allocation_id"] == "budget-CC-1-2030" and first["allocated"] == money("1000.00")
    # a retry (another as_of, the amount written without cents): the first allocation back, nothing added
    retry = AllocateBudget(allocation_id="budget-CC-1-2030", cost_centre="CC-1", period="2030",
                           amount=money("1000"), as_of=datetime.now(UTC) - timedelta(days=30), backdated=True)
    again, created_again = await handlers.allocate_budget(store, retry, TRACE)
    assert not created_again and again == first
    stored = await store.event_count()
    for changed, fields in [({"amount": money("1500.00")}, ["amount"]),
                            ({"amount": money("1000.00", "USD")}, ["amount"]),
                            ({"period": "2031", "cost_centre": "CC-2"}, ["cost_centre", "period"])]:
        with pytest.raises(Conflict) as err:
            await handlers.allocate_budget(store, AllocateBudget.model_validate({**cmd.model_dump(), **changed}),
                                          TRACE)
        assert err.value.code == "allocation_exists" and err.value.details["differing_fields"] == fields
        assert "budget-CC-1-2030" in err.value.message
    assert await store.event_count() == stored
    # another id adds to the budget; without an id every request is a new allocation
    await handlers.allocate_budget(store, AllocateBudget.model_validate(
        {**cmd.model_dump(), "allocation_id": "budget-CC-1-2030-b", "amount": money("200.00")}), TRACE)
    plain = AllocateBudget(cost_centre="CC-1", period="2030", amount=money("50.00"))
    a, created_a = await handlers.allocate_budget(store, plain, TRACE)
    b, created_b = await handlers.allocate_budget(store, plain, TRACE)
    assert created_a and created_b and a["allocation_id"] != b["allocation_id"]
    view = await cost_centre_view(store, "CC-1")
    assert (row(view, "2030")["allocated"], row(view, "2030")["allocations"]) == ("1300.00", 4)
    allocated = [e for e, _ in await published(store) if isinstance(e, BudgetAllocated)]
    assert [e.allocation_id for e in allocated][:2] == ["budget-CC-1-2030", "budget-CC-1-2030-b"]
    assert len(allocated) == 4


async def test_a_rejected_allocation_leaves_its_id_free(store: SQLiteStore) -> None:
    await handlers.allocate_budget(store, AllocateBudget(cost_centre="CC-1", period="2030",
                                                         amount=money("100.00")), TRACE)
    with pytest.raises(Invalid):  # the budget of 2030 is in EUR
        await handlers.allocate_budget(store, AllocateBudget(allocation_id="a-1", cost_centre="CC-1",
                                                             period="2030", amount=money("5.00", "USD")), TRACE)
    _, created = await handlers.allocate_budget(store, AllocateBudget(allocation_id="a-1", cost_centre="CC-1",
                                                                      period="2030", amount=money("5.00")), TRACE)
    assert created


async def test_invoices_are_idempotent_by_reference(store: SQLiteStore) -> None:
    await handlers.allocate_budget(store, AllocateBudget(cost_centre="CC-1", period="2030",
                                                         amount=money("1000.00")), TRACE)
    invoice = RecordCost(invoice_ref="INV-7", cost_centre="CC-1", period="2030", category="venue_hire",
                         amount=money("400.00"), session_id="s1")
    entry, created = await handlers.record_cost(store, invoice, TRACE)
    assert created and entry["kind"] == "actual" and entry["reason"] == "invoice" and entry["invoice_ref"] == "INV-7"
    again, created_again = await handlers.record_cost(store, invoice, TRACE)
    assert not created_again and again == entry
    with pytest.raises(Conflict) as err:
        await handlers.record_cost(store, RecordCost.model_validate({**invoice.model_dump(), "amount": money("401.00")}), TRACE)
    assert err.value.code == "invoice_exists" and err.value.details["differing_fields"] == ["amount"]
    assert len(await costs(store)) == 1
    view = await cost_centre_view(store, "CC-1")
    assert (row(view, "2030")["actual"], row(view, "2030")["remaining"]) == ("400.00", "600.00")
    assert [e["invoice_ref"] for e in await session_entries(store, "s1")] == ["INV-7"]


async def test_invoice_without_budget_or_in_another_currency_is_rejected_and_writes_nothing(store) -> None:
    with pytest.raises(Invalid) as err:
        await handlers.record_cost(store, RecordCost(invoice_ref="INV-1", cost_centre="CC-NONE", period="2030",
                                                     category="venue", amount=money("1.00")), TRACE)
    assert err.value.code == "unknown_cost_centre"
    await handlers.allocate_budget(store, AllocateBudget(cost_centre="CC-1", period="2030",
                                                         amount=money("1000.00")), TRACE)
    stored = await store.event_count()
    for cmd, code in [
        (RecordCost(invoice_ref="INV-1", cost_centre="CC-1", period="2029", category="venue",
                    amount=money("1.00")), "unknown_cost_centre_period"),
        (RecordCost(invoice_ref="INV-1", cost_centre="CC-1", period="2030", category="venue",
                    amount=money("1.00", "CHF")), "currency_mismatch"),
        (RecordCost(invoice_ref="INV-1", cost_centre="CC-1", period="2030", category="venue",
                    amount=money("-1.00")), "invalid"),
    ]:
        with pytest.raises(Invalid) as err:
            await handlers.record_cost(store, cmd, TRACE)
        assert err.value.code == code
    assert await store.event_count() == stored
    # after all that, the reference is still free
    _, created = await handlers.record_cost(store, RecordCost(invoice_ref="INV-1", cost_centre="CC-1",
                                                              period="2030", category="venue",
                                                              amount=money("1.00")), TRACE)
    assert created


async def test_credit_note_reduces_the_actual_cost(store: SQLiteStore) -> None:
    await handlers.allocate_budget(store, AllocateBudget(cost_centre="CC-1", period="2030",
                                                         amount=money("1000.00")), TRACE)
    await handlers.record_cost(store, RecordCost(invoice_ref="INV-1", cost_centre="CC-1", period="2030",
                                                 category="venue", amount=money("300.00")), TRACE)
    await handlers.record_cost(store, RecordCost(invoice_ref="CN-1", cost_centre="CC-1", period="2030",
                                                 category="venue", amount=money("-100.00"), credit_note=True), TRACE)
    assert row(await cost_centre_view(store, "CC-1"), "2030")["actual"] == "200.00"


# policies ------------------------------------------------------------------------------------------------------
async def test_scheduled_session_commits_its_planned_costs(store: SQLiteStore) -> None:
    envelope = await consume(store, scheduled())
    booked = await costs(store)
    assert [(c.cost_centre, c.category, c.amount.amount, c.kind, c.reason, c.period) for c in booked] == [
        ("CC-1", "venue_hire", Decimal("500.00"), "committed", "planned_cost", "2030"),
        ("CC-TRAINERS", "instructor_fee", Decimal("1200.00"), "committed", "planned_cost", "2030"),
    ]
    assert all(c.session_id == "s1" for c in booked)
    assert {cause for _, cause in await published(store)} == {envelope.id}  # caused by the scheduling event
    assert row(await cost_centre_view(store, "CC-TRAINERS"), "2030")["committed"] == "1200.00"
    assert len(await session_entries(store, "s1")) == 2


async def test_period_is_the_local_year_of_the_session_start(store: SQLiteStore) -> None:
    await consume(store, scheduled(slots=[{"starts_at": "2030-12-31T23:30:00+00:00",
                                           "ends_at": "2031-01-01T01:00:00+00:00"}]))
    assert {c.period for c in await costs(store)} == {"2031"}  # 00:30 on 1 January in Berlin


async def test_enrollment_commits_per_learner_costs_at_the_rates_in_force(store: SQLiteStore) -> None:
    await set_rates(store, ("catering", "25.00", "day"), ("workbook", "40.00", "session"))
    await consume(store, scheduled())  # two teaching days
    before = len(await costs(store))
    await consume(store, LearnerEnrolled(**learner(1)))
    await consume(store, LearnerWaitlisted(**learner(2), position=1))
    new = (await costs(store))[before:]
    assert [(c.category, c.amount.amount, c.reason, c.enrollment_id, c.cost_centre) for c in new] == [
        ("catering", Decimal("50.00"), "per_learner", "e1", "CC-1"),
        ("workbook", Decimal("40.00"), "per_learner", "e1", "CC-1"),
    ]
    # a promotion from the waitlist costs like an enrollment; new rates apply to enrollments from now on
    await set_rates(store, ("catering", "30.00", "day"))
    await consume(store, LearnerEnrolled(**learner(2), promoted_from_waitlist=True))
    promoted = (await costs(store))[before + 2:]
    assert [(c.category, c.amount.amount, c.enrollment_id) for c in promoted] == [("catering", Decimal("60.00"), "e2")]
    assert row(await cost_centre_view(store, "CC-1"), "2030")["committed"] == "650.00"  # 500 + 90 + 60


async def test_no_rates_means_no_per_learner_cost_and_a_log_without_personal_data(store: SQLiteStore) -> None:
    await consume(store, scheduled())
    before = len(await costs(store))
    with capture_logs() as logs:
        await consume(store, LearnerEnrolled(**learner(1)))
    assert len(await costs(store)) == before
    lines = [entry for entry in logs if "no per-learner rates" in entry["event"]]
    assert len(lines) == 1 and lines[0]["log_level"] == "info" and lines[0]["cost_centre"] == "CC-1"
    assert "learner-1" not in repr(logs)


async def test_enrollment_cancellation_reverses_its_per_learner_costs(store: SQLiteStore) -> None:
    await set_rates(store, ("catering", "25.00", "day"))
    await consume(store, scheduled())
    await consume(store, LearnerEnrolled(**learner(1)))
    await consume(store, LearnerEnrolled(**learner(2)))
    per_learner = {c.enrollment_id: c for c in await costs(store) if c.reason == "per_learner"}
    before = len(await costs(store))
    await consume(store, EnrollmentCancelled(**learner(1), previous_status="enrolled"))
    reversal, = (await costs(store))[before:]
    assert (reversal.amount.amount, reversal.reverses, reversal.reason, reversal.enrollment_id) == (
        Decimal("-50.00"), per_learner["e1"].cost_id, "enrollment_cancelled", "e1")
    # a waitlisted learner's cancellation costs nothing; a repeated cancellation reverses nothing twice
    await consume(store, EnrollmentCancelled(**learner(3), previous_status="waitlisted"))
    await consume(store, EnrollmentCancelled(**learner(1), previous_status="enrolled"))
    assert len(await costs(store)) == before + 1
    assert row(await cost_centre_view(store, "CC-1"), "2030")["committed"] == "550.00"  # 500 + e2's 50


async def test_session_cancellation_reverses_every_open_commitment(store: SQLiteStore) -> None:
    await set_rates(store, ("catering", "25.00", "day"))
    await consume(store, scheduled())
    await consume(store, LearnerEnrolled(**learner(1)))
    await consume(store, LearnerEnrolled(**learner(2)))
    await consume(store, EnrollmentCancelled(**learner(2), previous_status="enrolled"))
    await consume(store, SessionCancelled(occurred_at=NOW, session_id="s1", reason="trainer ill"))
    # enrollment tells its learners afterwards: nothing left to reverse
    before = len(await costs(store))
    await consume(store, EnrollmentCancelled(**learner(1), previous_status="enrolled", reason="session_cancelled"))
    assert len(await costs(store)) == before
    booked = await costs(store)
    assert sum(c.amount.amount for c in booked) == 0
    reversals = [c for c in booked if c.reason == "session_cancelled"]
    assert sorted(c.category for c in reversals) == ["catering", "instructor_fee", "venue_hire"]  # e2's was reversed
    reversed_ids = [c.reverses for c in booked if c.reverses]
    assert len(reversed_ids) == len(set(reversed_ids))  # nothing reversed twice
    entries = await session_entries(store, "s1")
    assert sum(Decimal(e["amount"]["amount"]) for e in entries if e["kind"] == "committed") == 0
    for cc in ("CC-1", "CC-TRAINERS"):
        assert row(await cost_centre_view(store, cc), "2030")["committed"] == "0.00"
    # an enrollment arriving after the cancellation costs nothing
    await consume(store, LearnerEnrolled(**learner(5)))
    assert len(await costs(store)) == len(booked)


async def test_enrollment_events_for_an_unknown_session_are_parked_then_applied(store: SQLiteStore) -> None:
    await set_rates(store, ("catering", "25.00", "day"))
    enrolled = await consume(store, LearnerEnrolled(**learner(1)))
    await consume(store, LearnerEnrolled(**learner(2)))
    await consume(store, EnrollmentCancelled(**learner(2), previous_status="enrolled"))
    await consume(store, LearnerWaitlisted(**learner(3), position=1))
    assert await costs(store) == []  # nothing booked, nothing lost
    assert len((await store.get("parked", "s1"))["events"]) == 4
    assert await store.scan("dead-letters") == []
    await consume(store, scheduled())
    booked = await costs(store)
    per_learner = [c for c in booked if c.reason == "per_learner"]
    assert [(c.enrollment_id, c.amount.amount) for c in per_learner] == [("e1", Decimal("50.00")),
                                                                         ("e2", Decimal("50.00"))]
    assert [(c.enrollment_id, c.amount.amount) for c in booked if c.reason == "enrollment_cancelled"] == [
        ("e2", Decimal("-50.00"))]
    causes = {c.cost_id: cause for c, cause in await published(store) if isinstance(c, CostIncurred)}
    assert causes[per_learner[0].cost_id] == enrolled.id  # caused by the parked enrollment event
    assert await store.get("parked", "s1") is None
    assert row(await cost_centre_view(store, "CC-1"), "2030")["committed"] == "550.00"


async def test_reschedule_into_another_year_moves_the_commitments(store: SQLiteStore) -> None:
    await set_rates(store, ("catering", "25.00", "day"))
    await consume(store, scheduled())
    await consume(store, LearnerEnrolled(**learner(1)))
    before = len(await costs(store))
    one_day_next_year = [{"starts_at": "2031-02-03T09:00:00+01:00", "ends_at": "2031-02-03T17:00:00+01:00"}]
    await consume(store, rescheduled(slots=one_day_next_year))
    moved = (await costs(store))[before:]
    assert sorted((c.period, c.category, c.amount.amount, c.reason) for c in moved) == [
        ("2030", "catering", Decimal("-50.00"), "session_rescheduled"),
        ("2030", "instructor_fee", Decimal("-1200.00"), "session_rescheduled"),
        ("2030", "venue_hire", Decimal("-500.00"), "session_rescheduled"),
        ("2031", "catering", Decimal("25.00"), "per_learner"),  # one teaching day now
        ("2031", "instructor_fee", Decimal("1200.00"), "planned_cost"),
        ("2031", "venue_hire", Decimal("500.00"), "planned_cost"),
    ]
    view = await cost_centre_view(store, "CC-1")
    assert (row(view, "2030")["committed"], row(view, "2031")["committed"]) == ("0.00", "525.00")
    # the same plan again: nothing changes
    await consume(store, rescheduled(slots=one_day_next_year))
    assert len(await costs(store)) == before + len(moved)


async def test_reschedule_changing_only_a_planned_cost_re_costs_only_that_one(store: SQLiteStore) -> None:
    await consume(store, scheduled())
    original = {c.category: c for c in await costs(store)}
    changed_fee = plan()["planned_costs"]
    changed_fee[1] = {**changed_fee[1], "amount": money("1500.00")}
    await consume(store, rescheduled(planned_costs=changed_fee))
    new = (await costs(store))[2:]
    assert [(c.category, c.amount.amount, c.reverses) for c in new] == [
        ("instructor_fee", Decimal("-1200.00"), original["instructor_fee"].cost_id),
        ("instructor_fee", Decimal("1500.00"), None),
    ]


async def test_a_replay_books_the_same_cost_ids(tmp_path) -> None:
    events = [scheduled(), LearnerEnrolled(**learner(1)), EnrollmentCancelled(**learner(1), previous_status="enrolled"),
              SessionCancelled(occurred_at=NOW, session_id="s1")]
    ids = []
    for name in ("first", "replay"):
        s = SQLiteStore(str(tmp_path / f"{name}.db"))
        await s.open()
        await set_rates(s, ("catering", "25.00", "day"))
        for n, event in enumerate(events):
            await consume(s, event, event_id=f"event-{n}")
        ids.append([(c.cost_id, c.reverses) for c in await costs(s)])
        await s.close()
    assert ids[0] == ids[1] and len(ids[0]) == 6


async def test_policy_events_are_set_by_rates_command(store: SQLiteStore) -> None:
    await set_rates(store, ("catering", "25.00", "day"))
    with pytest.raises(Invalid) as err:
        await set_rates(store, ("catering", "25.00", "day"), ("catering", "5.00", "session"))
    assert err.value.body()["detail"][0]["field"] == "rates.1.category"
    policies = [e for e, _ in await published(store) if isinstance(e, CostPolicySet)]
    assert len(policies) == 1 and policies[0].rates[0].amount.amount == Decimal("25.00")
