"""The demo's replay against fake services (httpx.MockTransport): what it sends, how it handles a session enrollment
does not know yet (404 retryable + Retry-After), booking conflicts, who attends (one batch per session), and budgets
allocated once by a deterministic allocation_id."""

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

    def __init__(self, capacity: int = 2, unknown_for: int = 0, refuse_attendance: bool = False) -> None:
        self.capacity = capacity
        self.unknown_for = unknown_for  # answer 404 unknown_session this many times first
        self.refuse_attendance = refuse_attendance  # answer 409 not_enrolled to attendance batches
        self.requests: list[tuple[str, str, dict]] = []
        self.booked: dict[str, list[str]] = {}
        self.allocations: dict[str, dict] = {}  # allocation_id -> body (finance's idempotency by allocation_id)

    def allocate(self, body: dict) -> httpx.Response:
        content = {k: body[k] for k in ("cost_centre", "period", "amount")}
        allocation_id = body.get("allocation_id")
        if allocation_id is None:
            return httpx.Response(201, json=content)
        known = self.allocations.get(allocation_id)
        if known is None:
            self.allocations[allocation_id] = content
            return httpx.Response(201, json={"allocation_id": allocation_id, **content})
        if known != content:
            return httpx.Response(409, json={"error": "allocation_exists", "message": "other content",
                                             "differing_fields": sorted(k for k in content if content[k] != known[k])})
        return httpx.Response(200, json={"allocation_id": allocation_id, **known})

    def allocated(self) -> dict[str, str]:
        return {i: a["amount"]["amount"] for i, a in self.allocations.items()}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        self.requests.append((request.method, str(request.url), body))
        host, path = request.url.host, request.url.path
        if host == "finance":
            if request.method == "GET":
                return httpx.Response(404, json={"error": "unknown_cost_centre"})
            if path == "/budgets":
                return self.allocate(body)
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
        if path.endswith("/attendance/batch"):
            if self.refuse_attendance:
                return httpx.Response(409, json={"error": "not_enrolled", "message": "records.0.enrollment_id: ...",
                                                 "index": 0})
            results = [{"enrollment_id": r["enrollment_id"], "status": "enrolled", "attendance": r["status"],
                        "changed": True} for r in body["records"]]
            return httpx.Response(200, json={"session_id": path.split("/")[2], "results": results})
        return httpx.Response(404, json={"error": "not_found"})


REAL_CLIENT = httpx.AsyncClient


async def run(policy, sessions, fake, monkeypatch):
    def client(**kwargs):
        return REAL_CLIENT(transport=httpx.MockTransport(fake), **kwargs)

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


async def test_attendance_is_one_batch_per_session_for_the_first_enrolled_learners_only(policy, monkeypatch):
    fake = FakeServices(capacity=2)
    # attendance 3 but only 2 seats: only the 2 enrolled learners can attend
    sessions = [session(policy, "2018-01-08-a", attendance="3"),
                session(policy, "2018-01-15-b", host="Elsewhere", start="2018-01-15", attendance="1", line=3)]
    outcome = await run(policy, sessions, fake, monkeypatch)
    batches = [r for r in fake.requests if "attendance" in r[1]]
    assert sorted(r[1] for r in batches) == ["http://enrollment/sessions/2018-01-08-a/attendance/batch",
                                             "http://enrollment/sessions/2018-01-15-b/attendance/batch"]
    by_session = {r[1].split("/")[4]: r[2] for r in batches}
    first = by_session["2018-01-08-a"]
    assert first["records"] == [{"enrollment_id": "e-2018-01-08-a-L0001", "status": "attended"},
                                {"enrollment_id": "e-2018-01-08-a-L0002", "status": "attended"}]
    assert first["backdated"] is True and first["as_of"] == "2018-01-09T21:30:00+00:00"  # end of day two, 16:30 EST
    assert by_session["2018-01-15-b"]["records"] == [{"enrollment_id": "e-2018-01-15-b-L0001", "status": "attended"}]
    assert [r.attended for r in outcome.results] == [2, 1] and outcome.failures == []


async def test_a_refused_attendance_batch_is_one_reported_failure_and_counts_nobody(policy, monkeypatch):
    fake = FakeServices(capacity=5, refuse_attendance=True)
    outcome = await run(policy, [session(policy, "2018-01-08-a", attendance="3")], fake, monkeypatch)
    assert [(f["step"], f["session_id"], f["records"]) for f in outcome.failures] == [("attendance", "2018-01-08-a", 3)]
    assert "not_enrolled" in outcome.failures[0]["error"] and outcome.results[0].attended == 0


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
    assert not [r for r in finance if r[0] == "GET"]  # nothing read back: the allocation id makes a rerun safe
    rates = [r for r in finance if r[0] == "PUT"]
    assert {u for _, u, _ in rates} == {f"/cost-centres/{cc}/per-learner-rates" for cc in policy.rates}
    budgets = [b for m, u, b in finance if u == "/budgets"]
    assert len(budgets) == sum(len(y) for y in policy.budgets.values())
    assert {"allocation_id": "demo-CC-SWC-2018", "cost_centre": "CC-SWC", "period": "2018",
            "amount": {"amount": "520000.00", "currency": "USD"}, "as_of": "2017-10-01T00:00:00+00:00",
            "backdated": True} in budgets
    assert len({b["allocation_id"] for b in budgets}) == len(budgets)
    invoices = [b for m, u, b in finance if u == "/costs"]
    assert [i["invoice_ref"] for i in invoices] == ["2018-01-08-a-instructor_travel", "2018-01-08-a-coordination"]
    assert invoices[0]["period"] == "2018" and invoices[0]["session_id"] == "2018-01-08-a"


async def test_a_rerun_allocates_no_budget_twice_and_a_changed_amount_is_reported(policy, monkeypatch):
    fake = FakeServices()
    await run(policy, [session(policy, "2018-01-08-a")], fake, monkeypatch)
    allocated = fake.allocated()
    assert allocated["demo-CC-SWC-2018"] == "520000.00"
    outcome = await run(policy, [session(policy, "2018-01-08-a")], fake, monkeypatch)
    assert fake.allocated() == allocated and outcome.failures == []
    # finance holds another amount under the demo's id (the policy changed since): reported, not topped up
    fake.allocations["demo-CC-SWC-2018"]["amount"] = {"amount": "1.00", "currency": "USD"}
    outcome = await run(policy, [session(policy, "2018-01-08-a")], fake, monkeypatch)
    assert [(f["step"], f["cost_centre"], f["period"]) for f in outcome.failures] == [("budget", "CC-SWC", "2018")]
    assert "allocation_exists" in outcome.failures[0]["error"]
