"""Races: many learners ask for few seats at the same moment, then several seats are given back at the same moment.

- never more enrolled than capacity, exactly ``capacity`` seats taken when more learners asked;
- the rest waitlisted in arrival order: the 201 answers' positions are 1..n without gap or repeat, and the roster's
  waitlist is in that order;
- concurrent cancellations on one roster: every promotion exactly once, the first waiting learners first;
- concurrent appends to one stream: one wins, the other is retried by the service or answered 409
  ``concurrent_modification`` (retryable), never both applied; the roster's version counts every event once;
- reporting and the rosters equal the oracle built from the answers.

Sizes: ``RELIABILITY_RACE_SESSIONS`` (40) x ``RELIABILITY_RACE_LEARNERS`` (30) concurrent requests.
"""

from __future__ import annotations

import asyncio
import os
import random

import httpx
import pytest

from devstack.stack import Stack

from .conftest import knob
from .workload import (
    Client,
    Oracle,
    SessionModel,
    Urls,
    compare,
    plan,
    setup_budgets,
    stored_events,
)

pytestmark = pytest.mark.integration


def test_concurrent_enrollments_for_few_seats_and_concurrent_cancellations(tmp_path, report) -> None:
    sessions = knob("RELIABILITY_RACE_SESSIONS", 40)
    learners = knob("RELIABILITY_RACE_LEARNERS", 30)
    seed = knob("RELIABILITY_SEED", random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    with Stack(tmp_path, extra_env={"LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")}) as stack:
        urls = Urls(stack.url("scheduling"), stack.url("enrollment"), stack.url("finance"))
        oracle = Oracle()
        conflicts = {"409": 0}

        async def scenario() -> tuple[int, int]:
            client = Client(stack.headers())
            raw = httpx.AsyncClient(timeout=60, headers=stack.headers(), limits=httpx.Limits(max_connections=200))
            races = promotions = 0
            try:
                await setup_budgets(client, urls, oracle)
                for n in range(sessions):
                    capacity = rng.randint(1, 4)
                    sid = f"race-s{n}"
                    await client.send("POST", f"{urls.scheduling}/sessions", plan(sid, n, capacity, "CC-REL-1"))
                    oracle.scheduled(sid, capacity, "CC-REL-1")

                async def enroll(sid: str, learner: str) -> dict:
                    # no client-side retry here except for the retryable answers: the race is the point
                    while True:
                        try:  # a dropped connection: asked again (idempotent per learner), the answer is the same
                            r = await raw.post(f"{urls.enrollment}/sessions/{sid}/enrollments",
                                               json={"learner_id": learner})
                        except httpx.TransportError:
                            continue
                        if r.status_code == 409 and r.json().get("error") == "concurrent_modification":
                            conflicts["409"] += 1
                            continue
                        if r.status_code == 404 and r.json().get("retryable"):
                            continue
                        assert r.status_code == 201, r.text
                        return r.json()

                async def cancel(eid: str) -> dict:
                    while True:
                        try:
                            r = await raw.post(f"{urls.enrollment}/enrollments/{eid}/cancel", json={})
                        except httpx.TransportError:
                            continue
                        if r.status_code == 409 and r.json().get("error") == "concurrent_modification":
                            conflicts["409"] += 1
                            continue
                        assert r.status_code == 200, r.text
                        return r.json()

                async def race(n: int) -> tuple[int, int]:
                    sid = f"race-s{n}"
                    model: SessionModel = oracle.sessions[sid]
                    names = [f"{sid}-l{k}" for k in range(learners)]
                    answers = await asyncio.gather(*(enroll(sid, name) for name in names))
                    seated = [a for a in answers if a["status"] == "enrolled"]
                    waiting = sorted((a for a in answers if a["status"] == "waitlisted"), key=lambda a: a["position"])
                    assert len(seated) == min(model.capacity, learners), (sid, len(seated), model.capacity)
                    assert [a["position"] for a in waiting] == list(range(1, len(waiting) + 1)), sid
                    # the oracle from the answers: seats in any order, the waitlist in the order of the positions
                    for a in seated:
                        model.enrolled.append(a["enrollment_id"])
                    for a in waiting:
                        model.waitlist.append(a["enrollment_id"])
                    for a in answers:
                        model.learner_of[a["enrollment_id"]] = a["learner_id"]
                        model.by_learner[a["learner_id"]] = a["enrollment_id"]
                    oracle.commands += len(answers)
                    # the roster lists the waitlist in arrival order (the order of the positions answered)
                    roster = (await raw.get(f"{urls.enrollment}/sessions/{sid}/roster")).json()
                    assert [e["enrollment_id"] for e in roster["waitlist"]] == model.waitlist, sid
                    assert roster["enrolled_count"] <= model.capacity
                    # every seat given back at the same moment: each frees one, the first waiting take them
                    leaving = list(model.enrolled)
                    results = await asyncio.gather(*(cancel(eid) for eid in leaving))
                    promoted = [p for r in results for p in r["promoted_enrollment_ids"]]
                    assert len(promoted) == len(set(promoted)), f"{sid}: a learner promoted twice"
                    # the first waiting learners, whichever cancellation committed first
                    assert set(promoted) == set(model.waitlist[:len(leaving)]), sid
                    oracle.commands += len(leaving)
                    model.gone |= set(leaving)
                    model.enrolled = list(model.waitlist[:len(leaving)])
                    model.waitlist = model.waitlist[len(leaving):]
                    model.promoted += promoted
                    roster = (await raw.get(f"{urls.enrollment}/sessions/{sid}/roster")).json()
                    # one event per enrollment, cancellation and promotion: nothing appended twice
                    assert roster["version"] == learners + len(leaving) + len(promoted), sid
                    return learners, len(promoted)

                for start in range(0, sessions, 4):  # four sessions' races at a time
                    for r, p in await asyncio.gather(*(race(n) for n in range(start, min(start + 4, sessions)))):
                        races += r
                        promotions += p
                return races, promotions
            finally:
                await raw.aclose()
                await client.close()

        races, promotions = asyncio.run(scenario())
        status = stack.wait_quiescent(timeout=120)
        result = asyncio.run(compare(oracle, stack.url("reporting"), stack.url("enrollment"), stack.headers()))
        report(f"races: {races} concurrent enrollments for {sum(s.capacity for s in oracle.sessions.values())} "
               f"seats in {sessions} sessions, promotions: {promotions} (each once), 409 retried: {conflicts['409']}, "
               f"commands: {oracle.commands}, events: {stored_events(status)}, lost: {result.lost}, "
               f"duplicated: {result.duplicated}")
        assert races >= 1000 or sessions * learners < 1000
        assert result.differences == [], result.differences[:20]
        assert (result.lost, result.duplicated) == (0, 0)
