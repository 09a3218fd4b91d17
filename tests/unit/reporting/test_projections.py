"""Reporting's policies and projections against a real SQLite store, driven by envelopes of the real contracts."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.reporting.application import queries
from services.reporting.application.policies import HANDLERS
from services.reporting.application.queries import SessionFilter
from shared.contracts.base import Money, catalogue
from shared.contracts.enrollment import AttendanceRecorded, EnrollmentCancelled, LearnerEnrolled, LearnerWaitlisted
from shared.contracts.finance import BudgetAllocated, CostIncurred, CostPolicySet, PerLearnerRate
from shared.contracts.scheduling import SessionCancelled, SessionRescheduled, SessionScheduled
from shared.contracts.topics import ENROLLMENT_EVENTS, FINANCE_EVENTS, SCHEDULING_EVENTS
from shared.messaging.consumer import DEAD_LETTERS, EventConsumer
from shared.messaging.envelope import Envelope
from shared.store.sqlite import SQLiteStore

NOW = datetime(2030, 1, 1, tzinfo=UTC)
TOPIC = {SessionScheduled: SCHEDULING_EVENTS, LearnerEnrolled: ENROLLMENT_EVENTS, CostIncurred: FINANCE_EVENTS}


@pytest.fixture
async def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "reporting.db"))
    await s.open()
    yield s
    await s.close()


class DeadLetters:
    """Stands in for the Kafka producer the consumer parks undecodable records with."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []

    async def send(self, topic, key, value, headers) -> None:
        self.sent.append((topic, key, value, headers))


@pytest.fixture
def dead_letters() -> DeadLetters:
    return DeadLetters()


@pytest.fixture
def consumer(store, dead_letters) -> EventConsumer:
    return EventConsumer("reporting", store, dict(HANDLERS), dead_letters, "ilt.reporting.dead-letter",
                         max_attempts=2, backoff_seconds=0)


def plan(**overrides) -> dict:
    data = {
        "course_code": "SWC", "title": "Software Carpentry", "delivery": "classroom", "venue_id": "room-a",
        "time_zone": "Europe/Berlin", "capacity": 3, "cost_centre": "CC-1",
        "slots": [{"starts_at": "2030-03-02T09:00:00+01:00", "ends_at": "2030-03-02T17:00:00+01:00"}],
    }
    data.update(overrides)
    return data


def ev(data) -> Envelope:
    return Envelope(data=data)


def who(n: int, session_id: str) -> dict:
    return {"occurred_at": NOW, "enrollment_id": f"e-{session_id}-{n}", "session_id": session_id,
            "learner_id": f"l{n}"}


def money(amount: str, currency: str = "EUR") -> Money:
    return Money(amount=Decimal(amount), currency=currency)


def session_story(session_id: str = "s1", **plan_overrides) -> list[Envelope]:
    """Three enrolled, one waitlisted then promoted after a cancellation, attendance with one correction."""
    return [ev(e) for e in [
        LearnerEnrolled(**who(1, session_id)),  # before the session is known to reporting
        SessionScheduled(occurred_at=NOW, session_id=session_id, **plan(**plan_overrides)),
        LearnerEnrolled(**who(2, session_id)),
        LearnerEnrolled(**who(3, session_id)),
        LearnerWaitlisted(**who(4, session_id), position=1),
        LearnerWaitlisted(**who(5, session_id), position=2),
        EnrollmentCancelled(**who(2, session_id), previous_status="enrolled"),
        LearnerEnrolled(**who(4, session_id), promoted_from_waitlist=True),
        EnrollmentCancelled(**who(5, session_id), previous_status="waitlisted"),
        AttendanceRecorded(**who(1, session_id), status="no_show"),
        AttendanceRecorded(**who(3, session_id), status="partial"),
        AttendanceRecorded(**who(1, session_id), status="attended", previous_status="no_show"),
        AttendanceRecorded(**who(4, session_id), status="no_show"),
    ]]


def budget_story(cost_centre: str = "CC-1") -> list[Envelope]:
    def cost(cost_id, kind, amount, reverses=None, currency="EUR", period="2030"):
        return CostIncurred(occurred_at=NOW, cost_id=cost_id, cost_centre=cost_centre, period=period, kind=kind,
                            reason="invoice" if kind == "actual" else "planned_cost", category="venue_hire",
                            amount=money(amount, currency), session_id="s1", reverses=reverses)

    return [ev(e) for e in [
        BudgetAllocated(occurred_at=NOW, allocation_id="a1", cost_centre=cost_centre, period="2030",
                        amount=money("5000.00")),
        BudgetAllocated(occurred_at=NOW, allocation_id="a2", cost_centre=cost_centre, period="2030",
                        amount=money("250.50")),
        cost("c1", "committed", "1200.00"),
        cost("c2", "committed", "99.99"),
        cost("c3", "committed", "-1200.00", reverses="c1"),  # session rescheduled: the old commitment goes
        cost("c4", "committed", "1300.00"),
        cost("c5", "actual", "1450.25"),  # invoice above the commitment
        cost("c6", "actual", "0.01"),
        cost("c7", "actual", "-0.01", reverses="c6"),
        cost("c8", "committed", "80.00", currency="USD"),
        cost("c9", "committed", "10.00", period="2031"),
        CostPolicySet(occurred_at=NOW, cost_centre=cost_centre,
                      rates=[PerLearnerRate(category="catering", amount=money("15.00"), per="day")]),
    ]]


async def feed(consumer: EventConsumer, envelopes: list[Envelope], start_offset: int = 0) -> None:
    for offset, envelope in enumerate(envelopes, start=start_offset):
        await consumer.process(envelope.value(), envelope.headers(), envelope.topic, 0, offset,
                               envelope.key.encode())


async def snapshot(store) -> dict:
    everything = SessionFilter()
    return {
        "sessions": await queries.list_sessions(store, everything),
        "totals": await queries.totals(store, everything),
        **{name: await queries.rollup(store, name, everything) for name in queries.ROLLUPS},
        "budgets": await queries.list_budgets(store),
    }


def test_every_event_type_of_the_catalogue_has_a_handler() -> None:
    from shared.contracts.requests import RequestOutcome

    # every fact; the outcomes of requests (accepted/rejected) are for their senders, not for the figures
    facts = {cls for cls in catalogue.events() if not issubclass(cls, RequestOutcome)}
    assert set(HANDLERS) == facts


async def test_policies_build_the_session_view(store) -> None:
    for envelope in session_story():
        async with store.transaction() as uow:
            await HANDLERS[type(envelope.data)](uow, envelope)
    view = await queries.get_session(store, "s1")
    assert {k: view[k] for k in ("status", "capacity", "enrolled", "waitlisted", "attended", "no_show",
                                 "fill_rate", "month", "year", "venue")} == {
        "status": "scheduled", "capacity": 3, "enrolled": 3, "waitlisted": 0, "attended": 2, "no_show": 1,
        "fill_rate": 1.0, "month": "2030-03", "year": 2030, "venue": "room-a",
    }


async def test_same_events_twice_through_the_consumer_change_nothing(store, consumer, dead_letters) -> None:
    story = session_story("s1") + session_story("s2", course_code="DC", capacity=10) + budget_story()
    await feed(consumer, story)
    first = await snapshot(store)
    assert first["totals"]["enrolled"] == 6 and first["totals"]["capacity"] == 13
    assert await store.processed_count("reporting") == len(story)

    await feed(consumer, story, start_offset=len(story))  # a redelivery of everything
    assert await snapshot(store) == first
    assert consumer.stats.skipped_duplicates == len(story)
    assert await store.processed_count("reporting") == len(story)
    assert dead_letters.sent == []


class Record:
    """A fetched Kafka record, as the consumer's batch path receives it."""

    def __init__(self, envelope: Envelope, offset: int) -> None:
        self.value, self.headers, self.key = envelope.value(), envelope.headers(), envelope.key.encode()
        self.topic, self.partition, self.offset = envelope.topic, 0, offset


async def test_batches_give_the_same_figures_as_one_by_one_and_redelivery_changes_nothing(tmp_path, store,
                                                                                          consumer) -> None:
    story = session_story("s1") + session_story("s2", capacity=10) + budget_story()
    await feed(consumer, story)
    one_by_one = await snapshot(store)

    batched = SQLiteStore(str(tmp_path / "batched.db"))
    await batched.open()
    batch_consumer = EventConsumer("reporting", batched, dict(HANDLERS), DeadLetters(), "dl", backoff_seconds=0)
    records = [Record(e, n) for n, e in enumerate(story)]
    for start in range(0, len(records), 7):
        await batch_consumer.process_batch(records[start:start + 7])
    assert await snapshot(batched) == one_by_one
    await batch_consumer.process_batch(records)  # the whole lot again, in one batch
    assert await snapshot(batched) == one_by_one
    assert await batched.processed_count("reporting") == len(story)
    await batched.close()


async def test_any_interleaving_of_the_topics_gives_the_same_figures(tmp_path) -> None:
    """Each topic keeps its order; the three topics interleave at random (as three partitions would)."""
    by_topic: dict[str, list[Envelope]] = {}
    for envelope in session_story("s1") + session_story("s2", capacity=5) + budget_story():
        by_topic.setdefault(envelope.topic, []).append(envelope)
    by_topic[SCHEDULING_EVENTS] += [
        ev(SessionRescheduled(occurred_at=NOW, session_id="s2", **plan(capacity=8, slots=[
            {"starts_at": "2030-05-02T09:00:00+02:00", "ends_at": "2030-05-02T17:00:00+02:00"}]))),
        ev(SessionCancelled(occurred_at=NOW, session_id="s1")),
    ]
    results = []
    for seed in range(4):
        rng = random.Random(seed)
        queues = {t: list(q) for t, q in by_topic.items()}
        order = []
        while any(queues.values()):
            topic = rng.choice([t for t, q in queues.items() if q])
            order.append(queues[topic].pop(0))
        store = SQLiteStore(str(tmp_path / f"r{seed}.db"))
        await store.open()
        consumer = EventConsumer("reporting", store, dict(HANDLERS), DeadLetters(), "dl", backoff_seconds=0)
        await feed(consumer, order)
        results.append(await snapshot(store))
        await store.close()
    assert all(r == results[0] for r in results)
    totals = results[0]["totals"]
    assert (totals["sessions"], totals["cancelled_sessions"], totals["capacity"], totals["enrolled"]) == (1, 1, 8, 3)
    assert [row["month"] for row in results[0]["by_month"]["by_month"]] == ["2030-03", "2030-05"]


async def test_budget_lines_with_reversals(store, consumer) -> None:
    await feed(consumer, budget_story("CC-1"))
    body = await queries.cost_centre_budgets(store, "CC-1")
    assert body == {"cost_centre": "CC-1", "budgets": [
        {"cost_centre": "CC-1", "period": "2030", "currency": "EUR", "allocated": "5250.50",
         "committed": "1399.99", "actual": "1450.25", "remaining": "3800.25"},
        {"cost_centre": "CC-1", "period": "2030", "currency": "USD", "allocated": "0.00",
         "committed": "80.00", "actual": "0.00", "remaining": "-80.00"},
        {"cost_centre": "CC-1", "period": "2031", "currency": "EUR", "allocated": "0.00",
         "committed": "10.00", "actual": "0.00", "remaining": "-10.00"},
    ]}
    # the invoice is reversed: committed is now the larger figure
    await feed(consumer, [ev(CostIncurred(
        occurred_at=NOW, cost_id="c10", cost_centre="CC-1", period="2030", kind="actual", reason="invoice",
        category="venue_hire", amount=money("-1450.25"), reverses="c5"))], start_offset=100)
    line = (await queries.cost_centre_budgets(store, "CC-1", period="2030"))["budgets"][0]
    assert (line["actual"], line["remaining"]) == ("0.00", "3850.51")
    assert [b["period"] for b in (await queries.list_budgets(store, period="2031"))["budgets"]] == ["2031"]


async def test_malformed_record_is_dead_lettered_and_later_events_still_apply(store, consumer,
                                                                             dead_letters) -> None:
    story = session_story("s1")
    await feed(consumer, story[:2])
    good = story[2]
    headers = [(k, v) for k, v in good.headers() if k != "ce_id"] + [("ce_id", b"broken-1")]
    await consumer.process(b'{"session_id": 42', headers, ENROLLMENT_EVENTS, 0, 2, b"s1")
    await feed(consumer, story[2:], start_offset=3)
    assert len(dead_letters.sent) == 1
    topic, _, _, dl_headers = dead_letters.sent[0]
    assert topic == "ilt.reporting.dead-letter" and dict(dl_headers)["dlq_reason"] == b"invalid_payload"
    assert [doc["event_id"] for _, doc in await store.scan(DEAD_LETTERS)] == ["broken-1"]
    assert (await queries.get_session(store, "s1"))["enrolled"] == 3


async def test_unknown_session_and_cost_centre_are_not_found(store) -> None:
    from shared.errors import NotFound

    with pytest.raises(NotFound) as missing_session:
        await queries.get_session(store, "nope")
    assert missing_session.value.code == "unknown_session"
    with pytest.raises(NotFound) as missing_cc:
        await queries.cost_centre_budgets(store, "nope")
    assert missing_cc.value.code == "unknown_cost_centre"
