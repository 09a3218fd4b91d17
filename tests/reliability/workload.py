"""Load, oracle and comparison shared by the fault-injection tests.

The **oracle** is computed independently of the services: it replays the business rules (seats while fewer than
capacity are enrolled and nobody waits, else the waitlist in arrival order; a cancelled seat promotes the first
waiting learner; a cancelled session ends every enrollment; committed = planned costs + per-learner rate x enrolled
learners of live sessions; actual = invoices) over the commands that were accepted, as the HTTP answers told the
client. Every answer is checked against the oracle as it arrives (status, position, promotions), and at the end
every projection is compared with it: reporting's ``/occupancy/sessions`` and ``/budgets``, enrollment's rosters.

The **client** retries a command on a connection error, a 5xx or a retryable 404 (the service was killed, or has not
seen the session yet); every command it sends may be repeated safely: sessions carry client-chosen ids, enrollment
is idempotent per learner and session, a cancellation of a cancelled enrollment changes nothing, invoices carry
their own reference.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

YEAR = datetime.now(UTC).year + 1
COST_CENTRES = ("CC-REL-1", "CC-REL-2", "CC-REL-3", "CC-REL-4")
PLANNED = Decimal("300.00")
RATE = Decimal("25.00")  # per enrolled learner and session
INVOICE = Decimal("280.00")
EUR = "EUR"


def money(amount: Decimal) -> dict[str, str]:
    return {"amount": f"{amount:.2f}", "currency": EUR}


def plan(session_id: str, n: int, capacity: int, cost_centre: str) -> dict[str, Any]:
    """A one-day classroom session; venue and day unique per ``n`` so that no two sessions conflict."""
    month, day = 1 + (n // 28) % 12, 1 + n % 28
    return {"session_id": session_id, "course_code": f"REL-{n % 7}", "title": "Reliability run",
            "delivery": "classroom", "venue_id": f"rel-room-{n}", "time_zone": "Europe/Berlin",
            "capacity": capacity, "cost_centre": cost_centre,
            "slots": [{"starts_at": f"{YEAR}-{month:02d}-{day:02d}T09:00",
                       "ends_at": f"{YEAR}-{month:02d}-{day:02d}T17:00"}],
            "planned_costs": [{"category": "venue_hire", "amount": money(PLANNED), "cost_centre": cost_centre}]}


class Disagreement(AssertionError):
    pass


# ----- the oracle --------------------------------------------------------------------------------------------------

@dataclass
class SessionModel:
    session_id: str
    capacity: int
    cost_centre: str
    cancelled: bool = False
    enrolled: list[str] = field(default_factory=list)  # enrollment ids
    waitlist: list[str] = field(default_factory=list)  # in arrival order
    gone: set[str] = field(default_factory=set)  # cancelled enrollments
    learner_of: dict[str, str] = field(default_factory=dict)
    by_learner: dict[str, str] = field(default_factory=dict)  # live enrollment per learner
    promoted: list[str] = field(default_factory=list)  # every promotion, in order


class Oracle:
    def __init__(self) -> None:
        self.sessions: dict[str, SessionModel] = {}
        self.allocated: dict[str, Decimal] = defaultdict(Decimal)
        self.invoices: dict[str, tuple[str, Decimal]] = {}  # invoice_ref -> (cost centre, amount)
        self.commands = 0  # accepted commands (each learner of a batch counts as one)

    def scheduled(self, session_id: str, capacity: int, cost_centre: str) -> None:
        self.sessions.setdefault(session_id, SessionModel(session_id, capacity, cost_centre))
        self.commands += 1

    def enrolled(self, session_id: str, learner_id: str, answer: dict[str, Any]) -> None:
        """One learner's enrollment as answered: must be what the rules say, in the order the answers came."""
        s = self.sessions[session_id]
        self.commands += 1
        eid = answer["enrollment_id"]
        if learner_id in s.by_learner:  # the learner holds one already: the same one comes back
            if s.by_learner[learner_id] != eid:
                raise Disagreement(f"{session_id}/{learner_id}: a second enrollment {eid}")
            return
        if s.enrolled.__len__() < s.capacity and not s.waitlist:
            s.enrolled.append(eid)
            expected = "enrolled"
        else:
            s.waitlist.append(eid)
            expected = "waitlisted"
        s.learner_of[eid] = learner_id
        s.by_learner[learner_id] = eid
        if answer["status"] != expected:
            raise Disagreement(f"{session_id}/{learner_id}: answered {answer['status']}, rules say {expected}")
        if expected == "waitlisted" and answer.get("position") != len(s.waitlist):
            raise Disagreement(f"{session_id}/{learner_id}: position {answer.get('position')}, "
                               f"rules say {len(s.waitlist)}")

    def cancelled(self, enrollment_id: str, session_id: str, answer: dict[str, Any], first_answer: bool) -> None:
        """A cancellation: the first waiting learner takes a freed seat. ``first_answer``: the command was applied
        by this very request (a retried one that had been applied before answers without promotions)."""
        s = self.sessions[session_id]
        self.commands += 1
        if enrollment_id in s.gone or s.cancelled:
            return
        promoted: list[str] = []
        if enrollment_id in s.enrolled:
            s.enrolled.remove(enrollment_id)
            while s.waitlist and len(s.enrolled) < s.capacity:
                first = s.waitlist.pop(0)
                s.enrolled.append(first)
                promoted.append(first)
        else:
            s.waitlist.remove(enrollment_id)
        s.gone.add(enrollment_id)
        del s.by_learner[s.learner_of[enrollment_id]]
        s.promoted += promoted
        if answer.get("status") != "cancelled":
            raise Disagreement(f"{enrollment_id}: answered {answer.get('status')} to a cancellation")
        if first_answer and answer.get("promoted_enrollment_ids") != promoted:
            raise Disagreement(f"{enrollment_id}: promotions {answer.get('promoted_enrollment_ids')}, "
                               f"rules say {promoted}")

    def capacity_changed(self, session_id: str, capacity: int) -> list[str]:
        """A reschedule with a new capacity: a larger one seats the first waiting learners (enrollment promotes
        them when it applies the change), a smaller one bumps nobody. Returns the promoted enrollments."""
        s = self.sessions[session_id]
        self.commands += 1
        s.capacity = capacity
        promoted: list[str] = []
        while not s.cancelled and s.waitlist and len(s.enrolled) < s.capacity:
            first = s.waitlist.pop(0)
            s.enrolled.append(first)
            promoted.append(first)
        s.promoted += promoted
        return promoted

    def rescheduled(self, session_id: str) -> None:
        """A reschedule that changes the times only: no seat changes."""
        self.commands += 1

    def session_cancelled(self, session_id: str) -> None:
        s = self.sessions[session_id]
        self.commands += 1
        if not s.cancelled:
            s.cancelled = True
            s.gone |= set(s.enrolled) | set(s.waitlist)
            s.enrolled, s.waitlist, s.by_learner = [], [], {}

    def invoiced(self, ref: str, cost_centre: str, amount: Decimal) -> None:
        self.commands += 1
        self.invoices[ref] = (cost_centre, amount)

    # expected projections
    def occupancy(self) -> dict[str, dict[str, Any]]:
        return {s.session_id: {"status": "cancelled" if s.cancelled else "scheduled", "capacity": s.capacity,
                               "enrolled": len(s.enrolled), "waitlisted": len(s.waitlist)}
                for s in self.sessions.values()}

    def budgets(self) -> dict[str, dict[str, str]]:
        committed: dict[str, Decimal] = defaultdict(Decimal)
        actual: dict[str, Decimal] = defaultdict(Decimal)
        for s in self.sessions.values():
            if not s.cancelled:
                committed[s.cost_centre] += PLANNED + RATE * len(s.enrolled)
        for cc, amount in self.invoices.values():
            actual[cc] += amount
        out = {}
        for cc in set(self.allocated) | set(committed):
            alloc = self.allocated[cc]
            out[cc] = {"allocated": f"{alloc:.2f}", "committed": f"{committed[cc]:.2f}",
                       "actual": f"{actual[cc]:.2f}",
                       "remaining": f"{alloc - max(committed[cc], actual[cc]):.2f}"}
        return out


# ----- the client --------------------------------------------------------------------------------------------------

class Client:
    """Commands over HTTP, repeated until answered (connection errors, 5xx, retryable 404/409 are retried)."""

    def __init__(self, headers: dict[str, str], timeout: float = 180.0) -> None:
        self.http = httpx.AsyncClient(timeout=30, headers=headers)
        self.timeout = timeout
        self.retries = 0
        self.requests = 0

    async def close(self) -> None:
        await self.http.aclose()

    async def send(self, method: str, url: str, body: dict[str, Any] | None = None,
                   ok: tuple[int, ...] = (200, 201)) -> tuple[httpx.Response, int]:
        """(the answer, how many times it was sent)."""
        deadline = time.monotonic() + self.timeout
        tries = 0
        while True:
            tries += 1
            self.requests += 1
            try:
                r = await self.http.request(method, url, json=body)
                if r.status_code in ok:
                    return r, tries
                retryable = r.status_code >= 500 or (r.status_code in (404, 409) and r.json().get("retryable")) \
                    or r.status_code == 409 and r.json().get("error") == "concurrent_modification"
                if not retryable:
                    raise AssertionError(f"{method} {url}: {r.status_code} {r.text[:300]}")
            except (httpx.TransportError, httpx.RemoteProtocolError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{method} {url} not answered after {self.timeout}s")
            self.retries += 1
            await asyncio.sleep(min(0.05 * tries, 0.5))


# ----- the load ----------------------------------------------------------------------------------------------------

@dataclass
class Urls:
    scheduling: str
    enrollment: str
    finance: str


async def setup_budgets(client: Client, urls: Urls, oracle: Oracle, amount: Decimal = Decimal("100000.00")) -> None:
    """Budgets and per-learner rates (sent once, before any fault: an allocation has no client-chosen id)."""
    for cc in COST_CENTRES:
        await client.send("POST", f"{urls.finance}/budgets",
                          {"cost_centre": cc, "period": str(YEAR), "amount": money(amount)}, ok=(201,))
        oracle.allocated[cc] += amount
        await client.send("PUT", f"{urls.finance}/cost-centres/{cc}/per-learner-rates",
                          {"rates": [{"category": "catering", "amount": money(RATE), "per": "session"}]}, ok=(200,))


async def session_script(client: Client, urls: Urls, oracle: Oracle, run: str, n: int, rng: random.Random) -> None:
    """One session's day, its commands one after another (sessions run concurrently): schedule, a bulk import,
    single enrollments, cancellations (promotions), maybe an invoice, sometimes the session's cancellation."""
    sid = f"{run}-s{n}"
    capacity = rng.randint(3, 15)
    cc = rng.choice(COST_CENTRES)
    await client.send("POST", f"{urls.scheduling}/sessions", plan(sid, n, capacity, cc))
    oracle.scheduled(sid, capacity, cc)
    learners = [f"{sid}-l{k}" for k in range(rng.randint(20, 60))]
    singles = learners[-rng.randint(2, 5):]
    bulk = learners[:-len(singles)]
    for chunk_start in range(0, len(bulk), 25):
        chunk = bulk[chunk_start:chunk_start + 25]
        r, _ = await client.send("POST", f"{urls.enrollment}/sessions/{sid}/enrollments/batch", {"learners": chunk},
                                 ok=(200,))
        for learner, result in zip(chunk, r.json()["results"], strict=True):
            oracle.enrolled(sid, learner, result)
    for learner in singles:
        r, _ = await client.send("POST", f"{urls.enrollment}/sessions/{sid}/enrollments", {"learner_id": learner})
        oracle.enrolled(sid, learner, r.json())
    model = oracle.sessions[sid]
    for _ in range(rng.randint(2, 6)):
        live = model.enrolled + model.waitlist
        if not live:
            break
        eid = rng.choice(live)
        r, tries = await client.send("POST", f"{urls.enrollment}/enrollments/{eid}/cancel", {})
        oracle.cancelled(eid, sid, r.json(), first_answer=tries == 1)
    if rng.random() < 0.5:
        ref = f"INV-{sid}"
        await client.send("POST", f"{urls.finance}/costs", {
            "invoice_ref": ref, "cost_centre": cc, "period": str(YEAR), "category": "venue_hire",
            "amount": money(INVOICE), "session_id": sid})
        oracle.invoiced(ref, cc, INVOICE)
    if rng.random() < 0.08:
        await client.send("POST", f"{urls.scheduling}/sessions/{sid}/cancel", {"reason": "venue closed"})
        oracle.session_cancelled(sid)


async def run_load(client: Client, urls: Urls, oracle: Oracle, run: str, seed: int, sessions: int,
                   concurrency: int, more: Any = None) -> int:
    """Run session scripts, ``concurrency`` at a time; ``more()`` true: keep adding sessions past ``sessions``.
    Returns how many sessions ran."""
    counter = iter(range(10**6))
    done = 0

    async def worker() -> None:
        nonlocal done
        while True:
            n = next(counter)
            if n >= sessions and not (more and more()):
                return
            await session_script(client, urls, oracle, run, n, random.Random(seed * 100003 + n))
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


# ----- the comparison ----------------------------------------------------------------------------------------------

@dataclass
class Comparison:
    lost: int = 0
    duplicated: int = 0
    differences: list[str] = field(default_factory=list)

    def count(self, where: str, expected: int, got: int) -> None:
        if got < expected:
            self.lost += expected - got
        elif got > expected:
            self.duplicated += got - expected
        if got != expected:
            self.differences.append(f"{where}: expected {expected}, got {got}")


async def compare(oracle: Oracle, reporting: str, enrollment: str, headers: dict[str, str]) -> Comparison:
    """Every projection against the oracle. ``lost``: facts the oracle has and a projection misses (seats,
    waitlist places, enrollments, sessions, money); ``duplicated``: facts counted more often than they happened."""
    out = Comparison()
    expected = oracle.occupancy()
    async with httpx.AsyncClient(timeout=60, headers=headers) as http:
        got = {s["session_id"]: s for s in (await http.get(f"{reporting}/occupancy/sessions")).json()["sessions"]}
        for sid, exp in expected.items():
            g = got.get(sid)
            if g is None:
                out.count(f"session {sid}", 1, 0)
                continue
            for key in ("enrolled", "waitlisted", "capacity"):
                out.count(f"reporting {sid} {key}", exp[key], g[key])
            if g["status"] != exp["status"]:
                out.differences.append(f"reporting {sid} status {g['status']} != {exp['status']}")
        for sid in set(got) - set(expected):  # each test runs its own stack: every session is the test's
            out.count(f"session {sid}", 0, 1)

        budgets = {b["cost_centre"]: b for b in (await http.get(f"{reporting}/budgets")).json()["budgets"]}
        for cc, exp_b in oracle.budgets().items():
            g = budgets.get(cc, {})
            for key, value in exp_b.items():
                want, have = Decimal(value), Decimal(g.get(key, "0"))
                if want != have:  # one wrong money figure: one fact lost (too low) or duplicated (too high)
                    out.lost += int(have < want)
                    out.duplicated += int(have > want)
                    out.differences.append(f"budget {cc} {key}: expected {want}, got {have}")

        sem = asyncio.Semaphore(16)

        async def roster(sid: str) -> None:
            async with sem:
                doc = (await http.get(f"{enrollment}/sessions/{sid}/roster")).json()
            s = oracle.sessions[sid]
            got_enrolled = [e["enrollment_id"] for e in doc["enrolled"]]
            got_wait = [e["enrollment_id"] for e in doc["waitlist"]]
            got_gone = {e["enrollment_id"] for e in doc["cancelled"]}
            for name, want, have in (("enrolled", set(s.enrolled), set(got_enrolled)),
                                     ("waitlist", set(s.waitlist), set(got_wait)), ("cancelled", s.gone, got_gone)):
                out.lost += len(want - have)
                out.duplicated += len(have - want)
                if want != have:
                    out.differences.append(f"roster {sid} {name}: missing {len(want - have)}, extra "
                                           f"{len(have - want)}")
            for name, items in (("enrolled", got_enrolled), ("waitlist", got_wait)):
                if len(items) != len(set(items)):
                    out.duplicated += len(items) - len(set(items))
                    out.differences.append(f"roster {sid} {name}: an enrollment listed twice")
            if got_wait != s.waitlist and set(got_wait) == set(s.waitlist):
                out.differences.append(f"roster {sid}: waitlist out of arrival order")

        await asyncio.gather(*(roster(sid) for sid in oracle.sessions))
    return out


def stored_events(status: dict[str, dict[str, Any]]) -> int:
    return sum(s.get("stored_events", 0) for s in status.values())
