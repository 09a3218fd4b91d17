"""The whole choreography across the four services as processes, on the real broker.

Schedule, enroll past capacity, waitlist, cancel, promotion, session cancellation cascade, costs and budgets,
attendance of a historical session, and the reporting numbers that result — read from reporting's HTTP API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from devstack.stack import Stack

pytestmark = pytest.mark.e2e
YEAR = datetime.now(UTC).year + 1
EUR = "EUR"


def money(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": EUR}


def session_body(session_id: str, venue: str, day: str, capacity: int, **extra) -> dict:
    return {
        "session_id": session_id, "course_code": "SWC", "title": "Software Carpentry", "delivery": "classroom",
        "venue_id": venue, "time_zone": "Europe/Berlin", "capacity": capacity, "cost_centre": "CC-E2E",
        "instructor_ids": [f"instructor-{session_id}"],
        "slots": [{"starts_at": f"{day}T09:00", "ends_at": f"{day}T17:00"},
                  {"starts_at": f"{day[:-2]}{int(day[-2:]) + 1:02d}T09:00",
                   "ends_at": f"{day[:-2]}{int(day[-2:]) + 1:02d}T17:00"}],
        "planned_costs": [{"category": "venue_hire", "amount": money("500.00"), "cost_centre": "CC-E2E"}],
        **extra,
    }


@pytest.fixture(scope="module")
def stack(kafka, tmp_path_factory):
    # A broker of its own (embedded mode): the quiescence check compares what the producers stored with what the
    # consumers processed, so events left on a shared broker by earlier tests would make it answer too early.
    servers = None if kafka.kind.startswith("embedded") else kafka.bootstrap_servers
    with Stack(tmp_path_factory.mktemp("e2e"), bootstrap_servers=servers) as running:
        yield running


def test_whole_choreography(stack: Stack) -> None:
    sched = httpx.Client(base_url=stack.url("scheduling"), timeout=30, headers=stack.headers_for("scheduling"))
    enrol = httpx.Client(base_url=stack.url("enrollment"), timeout=30, headers=stack.headers_for("enrollment"))
    fin = httpx.Client(base_url=stack.url("finance"), timeout=30, headers=stack.headers_for("finance"))
    rep = httpx.Client(base_url=stack.url("reporting"), timeout=30, headers=stack.headers_for("reporting"))

    # finance: a budget and per-learner rates for the cost centre
    assert fin.post("/budgets", json={"cost_centre": "CC-E2E", "period": str(YEAR),
                                      "amount": money("10000.00")}).status_code == 201
    rates = {"rates": [{"category": "catering", "amount": money("20.00"), "per": "day"},
                       {"category": "materials", "amount": money("15.00"), "per": "session"}]}
    assert fin.put("/cost-centres/CC-E2E/per-learner-rates", json=rates).status_code == 200

    # scheduling: two sessions; a third one in the same room at the same time is refused, naming the session
    assert sched.post("/sessions", json=session_body("s1", "room-1", f"{YEAR}-05-04", 2)).status_code == 201
    clash = sched.post("/sessions", json=session_body("clash", "room-1", f"{YEAR}-05-05", 5))
    assert clash.status_code == 409
    assert clash.json()["conflicts"][0]["conflicting_session_id"] == "s1"
    assert sched.post("/sessions", json=session_body("s3", "room-3", f"{YEAR}-06-01", 5)).status_code == 201

    # enrollment right after scheduling (the enrollment service waits for the session event)
    statuses = [enrol.post("/sessions/s1/enrollments", json={"learner_id": f"L{n}"}).json() for n in range(1, 5)]
    assert [s["status"] for s in statuses] == ["enrolled", "enrolled", "waitlisted", "waitlisted"]
    again = enrol.post("/sessions/s1/enrollments", json={"learner_id": "L1"})
    assert again.status_code == 200 and again.json()["enrollment_id"] == statuses[0]["enrollment_id"]

    # a cancellation frees a seat: the first waitlisted learner (L3) is promoted
    assert enrol.post(f"/enrollments/{statuses[0]['enrollment_id']}/cancel", json={}).status_code == 200
    promoted = enrol.get(f"/enrollments/{statuses[2]['enrollment_id']}").json()
    assert promoted["status"] == "enrolled"

    # session cancellation cascades to its enrollments
    for n in (1, 2):
        assert enrol.post("/sessions/s3/enrollments", json={"learner_id": f"M{n}"}).status_code == 201
    assert sched.post("/sessions/s3/cancel", json={"reason": "venue closed"}).status_code == 200

    # a historical session, imported with its attendance
    past = {"as_of": "2019-01-10T00:00:00Z", "backdated": True}
    body = session_body("old", "room-9", "2019-03-04", 3, **past)
    assert sched.post("/sessions", json=body).status_code == 201
    olds = [enrol.post("/sessions/old/enrollments", json={"learner_id": f"P{n}", **past}).json() for n in range(3)]
    after = {"as_of": "2019-03-05T17:00:00Z", "backdated": True}
    for rec, status in zip(olds, ["attended", "partial", "no_show"], strict=True):
        r = enrol.post(f"/enrollments/{rec['enrollment_id']}/attendance", json={"status": status, **after})
        assert r.status_code == 200, r.text

    # an invoice against the budget
    invoice = {"invoice_ref": "INV-1", "cost_centre": "CC-E2E", "period": str(YEAR), "category": "venue_hire",
               "amount": money("450.00"), "session_id": "s1"}
    assert fin.post("/costs", json=invoice).status_code == 201

    # the cancelled session cannot take enrollments any more
    late = enrol.post("/sessions/s3/enrollments", json={"learner_id": "M9"})
    assert late.status_code == 409 and late.json()["error"] == "session_cancelled"

    stack.wait_quiescent(timeout=120)

    s1 = rep.get("/occupancy/sessions/s1").json()
    assert (s1["capacity"], s1["enrolled"], s1["waitlisted"]) == (2, 2, 1)
    assert s1["fill_rate"] == 1.0
    s3 = rep.get("/occupancy/sessions/s3").json()
    assert (s3["status"], s3["enrolled"], s3["waitlisted"]) == ("cancelled", 0, 0)
    old = rep.get("/occupancy/sessions/old").json()
    assert (old["enrolled"], old["attended"], old["no_show"]) == (3, 2, 1)
    totals = rep.get("/occupancy/totals").json()
    assert (totals["sessions"], totals["cancelled_sessions"]) == (2, 1)
    assert (totals["capacity"], totals["enrolled"], totals["waitlisted"], totals["attended"]) == (5, 5, 1, 2)
    by_year = {row["year"]: row for row in rep.get("/occupancy/by-year").json()["by_year"]}
    assert by_year[2019]["enrolled"] == 3 and by_year[YEAR]["enrolled"] == 2

    # budget: venue 500 for s1 + per learner (2 days x 20 + 15 = 55) for L2 and L3; s3 fully reversed
    budget = {(b["period"], b["currency"]): b for b in rep.get("/budgets/CC-E2E").json()["budgets"]}
    line = budget[(str(YEAR), EUR)]
    assert Decimal(line["allocated"]) == Decimal("10000.00")
    assert Decimal(line["committed"]) == Decimal("610.00")
    assert Decimal(line["actual"]) == Decimal("450.00")
    assert Decimal(line["remaining"]) == Decimal("9390.00")
    # the historical session committed its venue and three learners in 2019
    assert Decimal(budget[("2019", EUR)]["committed"]) == Decimal("500.00") + 3 * Decimal("55.00")

    # finance agrees with reporting
    ledger = fin.get("/cost-centres/CC-E2E").json()
    assert ledger
