"""Finance as a process next to scheduling and enrollment, on the real broker: costs on the wire and in the API."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from shared.contracts.enrollment import LearnerEnrolled
from shared.contracts.topics import FINANCE_EVENTS
from shared.messaging.envelope import Envelope
from shared.messaging.kafka import Producer
from wire import poll, records_of

pytestmark = pytest.mark.integration

YEAR = datetime.now(UTC).year + 1
COST_INCURRED = "ilt.finance.cost-incurred.v1"


@pytest.fixture(scope="module")
def stack(kafka, tmp_path_factory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("finance-stack"), services=["scheduling", "enrollment", "finance"],
               bootstrap_servers=kafka.bootstrap_servers) as running:
        yield running


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15, headers=stack.headers()) as client:
        yield client


def money(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "EUR"}


def schedule(http: httpx.Client, stack: Stack, cost_centre: str, venue: str, session_id: str | None = None) -> str:
    session_id = session_id or f"s-{uuid.uuid4()}"
    response = http.post(f"{stack.url('scheduling')}/sessions", json={
        "session_id": session_id, "course_code": "SWC", "title": "Software Carpentry", "delivery": "classroom",
        "venue_id": venue, "time_zone": "Europe/Berlin", "capacity": 2, "cost_centre": cost_centre,
        "slots": [{"starts_at": f"{YEAR}-04-01T09:00", "ends_at": f"{YEAR}-04-01T17:00"},
                  {"starts_at": f"{YEAR}-04-02T09:00", "ends_at": f"{YEAR}-04-02T17:00"}],
        "planned_costs": [{"category": "venue_hire", "amount": money("500.00"), "cost_centre": cost_centre}],
    })
    assert response.status_code == 201, response.text
    return session_id


def budget_row(http: httpx.Client, stack: Stack, cost_centre: str) -> dict[str, Any]:
    body = http.get(f"{stack.url('finance')}/cost-centres/{cost_centre}").json()
    return next(b for b in body["budgets"] if b["period"] == str(YEAR))


def test_scheduled_and_enrolled_costs_on_the_wire_and_reversed_by_cancellation(stack, http, kafka) -> None:
    finance, enrollment = stack.url("finance"), stack.url("enrollment")
    cc = f"CC-{uuid.uuid4().hex[:8]}"
    r = http.post(f"{finance}/budgets", json={"cost_centre": cc, "period": str(YEAR), "amount": money("10000.00")})
    assert r.status_code == 201, r.text
    r = http.put(f"{finance}/cost-centres/{cc}/per-learner-rates", json={"rates": [
        {"category": "catering", "amount": money("25.00"), "per": "day"},
        {"category": "workbook", "amount": money("40.00"), "per": "session"}]})
    assert r.status_code == 200, r.text

    session_id = schedule(http, stack, cc, venue=f"room-{cc}")
    for learner in ("l1", "l2", "l3"):  # capacity 2: the third waits and costs nothing
        r = http.post(f"{enrollment}/sessions/{session_id}/enrollments", json={"learner_id": learner})
        assert r.status_code == 201, r.text
    # 500 venue + 2 learners x (2 days x 25 catering + 40 workbook)
    row = poll(lambda: budget_row(http, stack, cc), lambda b: b["committed"] == "680.00")
    assert (row["allocated"], row["actual"], row["remaining"]) == ("10000.00", "0.00", "9320.00")

    records = records_of(kafka.bootstrap_servers, FINANCE_EVENTS, session_id, count=5)
    assert [dict(r.headers)["ce_type"].decode() for r in records] == [COST_INCURRED] * 5
    values = [json.loads(r.value) for r in records]
    assert all(isinstance(v["amount"]["amount"], str) for v in values)  # money travels as strings
    assert sorted((v["reason"], v["category"], v["amount"]["amount"]) for v in values) == [
        ("per_learner", "catering", "50.00"), ("per_learner", "catering", "50.00"),
        ("per_learner", "workbook", "40.00"), ("per_learner", "workbook", "40.00"),
        ("planned_cost", "venue_hire", "500.00"),
    ]
    assert all(v["kind"] == "committed" and v["period"] == str(YEAR) for v in values)
    assert all(dict(r.headers).get("ce_causationid") for r in records)  # caused by scheduling/enrollment events

    r = http.post(f"{finance}/costs", json={"invoice_ref": f"INV-{cc}", "cost_centre": cc, "period": str(YEAR),
                                            "category": "venue_hire", "amount": money("450.00"),
                                            "session_id": session_id})
    assert r.status_code == 201, r.text

    r = http.post(f"{stack.url('scheduling')}/sessions/{session_id}/cancel", json={"reason": "trainer ill"})
    assert r.status_code == 200, r.text
    row = poll(lambda: budget_row(http, stack, cc), lambda b: b["committed"] == "0.00")
    assert (row["actual"], row["remaining"]) == ("450.00", "9550.00")
    # 5 commitments + the invoice + 5 reversals; enrollment's cascade of cancellations reverses nothing twice
    stack.wait_quiescent(timeout=20)
    records = records_of(kafka.bootstrap_servers, FINANCE_EVENTS, session_id, count=11)
    values = [json.loads(r.value) for r in records]
    assert len(values) == 11
    committed = [v for v in values if v["kind"] == "committed"]
    assert sum(Decimal(v["amount"]["amount"]) for v in committed) == 0
    reversals = [v for v in committed if v["reverses"]]
    assert len(reversals) == 5
    # the planned cost is reversed by the session's cancellation; per-learner costs by whichever finance sees first:
    # the session's cancellation (scheduling topic) or enrollment's cascade of cancellations (enrollment topic)
    assert {v["reason"] for v in reversals if v["category"] == "venue_hire"} == {"session_cancelled"}
    assert {v["reason"] for v in reversals} <= {"session_cancelled", "enrollment_cancelled"}
    session = http.get(f"{finance}/sessions/{session_id}/costs").json()
    assert session["status"] == "cancelled" and session["open_committed"] == [] and len(session["entries"]) == 11


def test_an_enrollment_seen_before_its_session_is_parked_then_costed(stack, http, kafka) -> None:
    finance = stack.url("finance")
    cc = f"CC-{uuid.uuid4().hex[:8]}"
    http.put(f"{finance}/cost-centres/{cc}/per-learner-rates",
             json={"rates": [{"category": "catering", "amount": money("10.00"), "per": "day"}]}).raise_for_status()
    session_id = f"s-{uuid.uuid4()}"
    early = Envelope(data=LearnerEnrolled(occurred_at=datetime.now(UTC), enrollment_id=f"e-{session_id}",
                                          session_id=session_id, learner_id="l-early"))

    async def publish() -> None:
        producer = Producer(kafka.bootstrap_servers)
        try:
            await producer.send(early.topic, early.key.encode(), early.value(), early.headers())
        finally:
            await producer.stop()

    asyncio.run(publish())
    parked = poll(lambda: http.get(f"{finance}/sessions/{session_id}/costs"),
                  lambda r: r.status_code == 200 and r.json()["parked_enrollment_events"] == 1)
    assert parked.json()["status"] == "unknown" and parked.json()["entries"] == []
    assert http.get(f"{finance}/status").json()["dead_lettered"] == 0

    schedule(http, stack, cc, venue=f"room-{cc}", session_id=session_id)
    costs = poll(lambda: http.get(f"{finance}/sessions/{session_id}/costs").json(),
                 lambda body: len(body["entries"]) == 2)
    assert costs["parked_enrollment_events"] == 0
    assert sorted((e["reason"], e["amount"]["amount"], e["enrollment_id"]) for e in costs["entries"]) == [
        ("per_learner", "20.00", f"e-{session_id}"), ("planned_cost", "500.00", None)]
    records = records_of(kafka.bootstrap_servers, FINANCE_EVENTS, session_id, count=2)
    per_learner = next(r for r in records if json.loads(r.value)["reason"] == "per_learner")
    assert dict(per_learner.headers)["ce_causationid"].decode() == early.id
