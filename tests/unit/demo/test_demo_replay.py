"""The demo's replay against fake services (httpx.MockTransport): what it sends, how it handles a session enrollment
does not know yet (404 retryable + Retry-After), booking conflicts, and who attends."""

from __future__ import annotations

import json

import httpx
import pytest

from demo.mapping import BOOKING_CONFLICT, WORKSHOPS, SessionImport, SourceRow, map_workshop
from demo.policy import load_policy
from demo.replay import MAX_ATTEMPTS, Urls, replay

URLS = Urls("http://scheduling", "http://enrollment", "http://finance", "http://reporting")


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def session(policy, slug, host="Example University", attendance="3", start="2018-01-08", line=2) -> SessionImport:
    row = SourceRow(WORKSHOPS, line, {"slug": slug, "tag_name": "SWC", "start_date": start, "attendance": attendance,
                                      "host_name": host, "country": "US"})
    result = map_workshop(row, policy, {})
    assert isinstance(result, SessionImport)
    return result


class FakeServices:
    """Just enough of the four APIs; records every request."""

    def __init__(self, capacity: int = 2, unknown_for: int = 0) -> None:
        self.capacity = capacity
        self.unknown_for = unknown_for  # answer 404 unknown_session this many times first
        self.requests: list[tuple[str, str, dict]] = []
        self.booked: dict[str, list[str]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        self.requests.append((request.method, str(request.url), body))
        host, path = request.url.host, request.url.path
        if host == "finance":
            if request.method == "GET":
                return httpx.Response(404, json={"error": "unknown_cost_centre"})
            return httpx.Response(201 if request.method == "POST" else 200, json={})
        if host == "scheduling":
            venue = body["venue_id"]
            if venue in self.booked:
                first = self.booked[venue][0]
                return httpx.Response(409, json={"error": "booking_conflict", "message": "booked", "conflicts": [
                    {"resource_type": "venue", "resource_id": venue, "conflicting_session_id": first}]})
            self.booked[venue] = [body["session_id"]]
            return httpx.Response(201, json={"session_id": body["session_id"]})
        if path.endswith("/enrollments/batch"):
            if self.unknown_for > 0:
                self.unknown_for -= 1
                return httpx.Response(404, headers={"Retry-After": "0"},
                                      json={"error": "unknown_session", "retryable": True})
            session_id = path.split("/")[2]
            results = [{"enrollment_id": f"e-{learner}", "learner_id": learner,
                        "status": "enrolled" if n < self.capacity else "waitlisted"}
                       for n, learner in enumerate(body["learners"])]
            return httpx.Response(200, json={"session_id": session_id, "results": results})
        if path.endswith("/attendance"):
            return httpx.Response(200, json={"status": "enrolled", "attendance": body["status"]})
        return httpx.Response(404, json={"error": "not_found"})


async def run(policy, sessions, fake, monkeypatch):
    real = httpx.AsyncClient

    def client(**kwargs):
        return real(transport=httpx.MockTransport(fake), **kwargs)

    monkeypatch.setattr("demo.replay.httpx.AsyncClient", client)
    return await replay(URLS, policy, sessions, concurrency=4, progress=False)


async def test_enrollment_waits_for_a_session_it_does_not_know_yet(policy, monkeypatch):
    fake = FakeServices(capacity=2, unknown_for=2)
    outcome = await run(policy, [session(policy, "2018-01-08-a", attendance="3")], fake, monkeypatch)
    batches = [r for r in fake.requests if r[1].endswith("/enrollments/batch")]
    assert len(batches) == 3  # two 404 retryable answers, honoured, then accepted
    assert batches[-1][2]["learners"] == ["2018-01-08-a-L0001", "2018-01-08-a-L0002", "2018-01-08-a-L0003"]
    assert batches[-1][2]["backdated"] is True
    assert outcome.failures == []
    result = outcome.results[0]
    assert (len(result.enrolled_ids), result.waitlisted) == (2, 1)


async def test_a_session_enrollment_never_learns_of_is_a_reported_failure(policy, monkeypatch):
    fake = FakeServices(unknown_for=MAX_ATTEMPTS)
    outcome = await run(policy, [session(policy, "2018-01-08-a")], fake, monkeypatch)
    assert [f["step"] for f in outcome.failures] == ["enrollment"]
    assert "unknown_session" in outcome.failures[0]["error"]


async def test_attendance_is_recorded_for_the_first_enrolled_learners_only(policy, monkeypatch):
    fake = FakeServices(capacity=2)
    # attendance 3 but only 2 seats: only the 2 enrolled learners can attend
    outcome = await run(policy, [session(policy, "2018-01-08-a", attendance="3")], fake, monkeypatch)
    marked = [r for r in fake.requests if r[1].endswith("/attendance")]
    assert [r[1] for r in marked] == ["http://enrollment/enrollments/e-2018-01-08-a-L0001/attendance",
                                      "http://enrollment/enrollments/e-2018-01-08-a-L0002/attendance"]
    assert all(r[2]["status"] == "attended" and r[2]["backdated"] for r in marked)
    assert marked[0][2]["as_of"] == "2018-01-09T21:30:00+00:00"  # end of day two, 16:30 EST
    assert outcome.results[0].attended == 2


async def test_the_earlier_row_of_a_venue_wins_a_booking_conflict(policy, monkeypatch):
    fake = FakeServices()
    sessions = [session(policy, "2018-01-08-first", line=2), session(policy, "2018-01-08-other", host="Elsewhere",
                                                                    line=3),
                session(policy, "2018-01-08-second", line=4)]
    outcome = await run(policy, sessions, fake, monkeypatch)
    assert [r.session.session_id for r in outcome.results] == ["2018-01-08-first", "2018-01-08-other"]
    [rejected] = outcome.rejected
    assert (rejected.line, rejected.key, rejected.reason) == (4, "2018-01-08-second", BOOKING_CONFLICT)
    assert "2018-01-08-first" in rejected.message
    # a rejected session gets no enrollments
    assert not any("2018-01-08-second" in r[1] for r in fake.requests if r[0] == "POST" and "enroll" in r[1])


async def test_finance_gets_rates_budgets_and_the_invoices_of_planned_costs(policy, monkeypatch):
    fake = FakeServices()
    await run(policy, [session(policy, "2018-01-08-a")], fake, monkeypatch)
    finance = [(m, u.removeprefix("http://finance"), b) for m, u, b in fake.requests if u.startswith("http://finance")]
    rates = [r for r in finance if r[0] == "PUT"]
    assert {u for _, u, _ in rates} == {f"/cost-centres/{cc}/per-learner-rates" for cc in policy.rates}
    budgets = [b for m, u, b in finance if u == "/budgets"]
    assert len(budgets) == sum(len(y) for y in policy.budgets.values())
    assert {"cost_centre": "CC-SWC", "period": "2018", "amount": {"amount": "520000.00", "currency": "USD"},
            "as_of": "2017-10-01T00:00:00+00:00", "backdated": True} in budgets
    invoices = [b for m, u, b in finance if u == "/costs"]
    assert [i["invoice_ref"] for i in invoices] == ["2018-01-08-a-instructor_travel", "2018-01-08-a-coordination"]
    assert invoices[0]["period"] == "2018" and invoices[0]["session_id"] == "2018-01-08-a"
