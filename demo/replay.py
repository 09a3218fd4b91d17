"""Replay the import plan through the services' public HTTP APIs (nothing else: no store, no Kafka, no imports of
service code).

Order: finance setup (per-learner rates, budgets with a deterministic allocation_id), sessions (scheduling),
enrollments (enrollment's batch endpoint), then at the same time attendance (enrollment's attendance batch
endpoint: one request per session) and the invoices of the planned costs (finance). Every command carries as_of
(its business time) and backdated=true. Every step is idempotent, so a rerun against the same stores changes
nothing.

Sessions are scheduled in file order per venue (or virtual room): rows of one venue one after the other, so
the earlier row wins a booking conflict exactly as in file order; different venues go concurrently (they
cannot conflict: sessions book no instructors or equipment).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from tqdm import tqdm

from .mapping import BOOKING_CONFLICT, NOT_IMPORTED, Rejected, SessionImport
from .policy import Policy

MAX_ATTEMPTS = 8  # per request: retryable answers (404/409/503 that say so, with Retry-After) and dropped connections
MAX_RETRY_AFTER = 10.0  # seconds: a longer Retry-After is shortened to this
BATCH_LIMIT = 1000  # enrollment's maximum batch size (enrollments and attendance records)


class ServiceError(Exception):
    def __init__(self, method: str, url: str, status: int, body: Any) -> None:
        self.status, self.body = status, body
        error = body.get("error") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else str(body)[:300]
        super().__init__(f"{method} {url} -> {status} {error or ''}: {message}")


@dataclass(frozen=True)
class Urls:
    scheduling: str
    enrollment: str
    finance: str
    reporting: str

    def as_dict(self) -> dict[str, str]:
        return {"scheduling": self.scheduling, "enrollment": self.enrollment, "finance": self.finance,
                "reporting": self.reporting}


@dataclass
class SessionResult:
    """What the services answered for one session (for the report's cross-check, never for its figures)."""

    session: SessionImport
    enrolled_ids: list[str] = field(default_factory=list)  # enrollment ids with status enrolled, learner order
    waitlisted: int = 0
    attended: int = 0


@dataclass
class ReplayOutcome:
    results: list[SessionResult]
    rejected: list[Rejected]  # booking conflicts and other refusals of scheduling
    failures: list[dict[str, Any]]  # enrollment, attendance, finance requests that failed for good
    requests: dict[str, int]
    seconds: dict[str, float]


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()


class Client:
    """httpx.AsyncClient with the retry rules of the brief: a retryable answer is retried after its Retry-After,
    a bounded number of times; no fixed sleeps otherwise."""

    def __init__(self, http: httpx.AsyncClient, auth: dict[str, dict[str, str]] | None = None) -> None:
        self.http = http
        self.auth = auth or {}  # base URL -> the Authorization header to send there
        self.requests: dict[str, int] = {}
        self.retries = 0

    async def call(self, method: str, url: str, body: dict[str, Any] | None = None,
                   ok: Iterable[int] = (200, 201)) -> tuple[int, Any]:
        """(status, JSON body) of the first answer that is not retryable; ServiceError unless its status is ok."""
        ok = tuple(ok)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            self.requests[method] = self.requests.get(method, 0) + 1
            try:
                response = await self.http.request(method, url, json=body, headers=self._auth(url))
            except httpx.TransportError:
                if attempt == MAX_ATTEMPTS:
                    raise
                self.retries += 1
                await asyncio.sleep(min(0.1 * 2 ** attempt, MAX_RETRY_AFTER))
                continue
            try:
                data = response.json()
            except ValueError:
                data = response.text
            if response.status_code in ok:
                return response.status_code, data
            wait = _retry_after(response, data)
            if wait is None or attempt == MAX_ATTEMPTS:
                raise ServiceError(method, url, response.status_code, data)
            self.retries += 1
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    def _auth(self, url: str) -> dict[str, str] | None:
        for base, headers in self.auth.items():
            if url == base or url.startswith(base.rstrip("/") + "/"):
                return headers
        return None


def _retry_after(response: httpx.Response, data: Any) -> float | None:
    """Seconds to wait before trying again, or None when the answer is final."""
    retryable = response.status_code == 503 or (isinstance(data, dict) and data.get("retryable") is True)
    if not retryable:
        return None
    header = response.headers.get("Retry-After")
    try:
        return min(max(float(header), 0.0), MAX_RETRY_AFTER) if header is not None else 1.0
    except ValueError:
        return 1.0


async def _bounded(items: list[Any], limit: int, work: Callable[[Any], Awaitable[None]]) -> None:
    semaphore = asyncio.Semaphore(limit)

    async def one(item: Any) -> None:
        async with semaphore:
            await work(item)

    await asyncio.gather(*(one(i) for i in items))


# ----- finance setup --------------------------------------------------------------------------------------------
def allocation_id(cost_centre: str, period: str) -> str:
    """The demo's one allocation per cost centre and year: the same id on every run, so finance allocates it once."""
    return f"demo-{cost_centre}-{period}"


async def setup_finance(client: Client, urls: Urls, policy: Policy, failures: list[dict[str, Any]]) -> None:
    """Per-learner rates of every cost centre, then its budgets: one allocation per cost centre and year, with
    a deterministic allocation_id (a rerun against the same stores gets 200 and allocates nothing more; a policy
    amount changed since is finance's 409 allocation_exists, reported as a failure)."""
    for cc, rates in policy.rates.items():
        body = {"rates": [{"category": r.category, "amount": policy.money(r.amount), "per": r.per} for r in rates],
                "as_of": _iso(policy.setup_as_of), "backdated": True}
        try:
            await client.call("PUT", f"{urls.finance}/cost-centres/{cc}/per-learner-rates", body)
        except ServiceError as exc:
            failures.append({"step": "per_learner_rates", "cost_centre": cc, "error": str(exc)})
    for cc, years in policy.budgets.items():
        for period, amount in sorted(years.items()):
            body = {"allocation_id": allocation_id(cc, period), "cost_centre": cc, "period": period,
                    "amount": policy.money(amount), "as_of": _iso(policy.budget_as_of(period)), "backdated": True}
            try:
                await client.call("POST", f"{urls.finance}/budgets", body)
            except ServiceError as exc:
                failures.append({"step": "budget", "cost_centre": cc, "period": period, "error": str(exc)})


# ----- sessions -------------------------------------------------------------------------------------------------
async def schedule_sessions(client: Client, urls: Urls, policy: Policy, sessions: list[SessionImport],
                            concurrency: int, progress: bool) -> tuple[list[SessionResult], list[Rejected]]:
    by_place: dict[str, list[SessionImport]] = {}
    for s in sessions:
        by_place.setdefault(f"{s.delivery}:{s.place}", []).append(s)
    accepted: dict[str, SessionResult] = {}
    rejected: list[Rejected] = []
    with tqdm(total=len(sessions), desc="schedule ", unit="session", disable=not progress) as bar:
        async def place(group: list[SessionImport]) -> None:
            for s in group:  # file order within one venue/room
                try:
                    await client.call("POST", f"{urls.scheduling}/sessions", s.schedule_body(policy))
                    accepted[s.session_id] = SessionResult(s)
                except ServiceError as exc:
                    rejected.append(_scheduling_refusal(s, exc))
                bar.update()

        await _bounded(list(by_place.values()), concurrency, place)
    order = {(s.file, s.line): n for n, s in enumerate(sessions)}
    rejected.sort(key=lambda r: order[(r.file, r.line)])
    return [accepted[s.session_id] for s in sessions if s.session_id in accepted], rejected


def _scheduling_refusal(s: SessionImport, exc: ServiceError) -> Rejected:
    body = exc.body if isinstance(exc.body, dict) else {}
    if exc.status == 409 and body.get("error") == "booking_conflict":
        conflicts = body.get("conflicts") or [{}]
        first = conflicts[0]
        message = (f"{first.get('resource_type', 'resource')} {first.get('resource_id', s.place)!r} is already "
                   f"booked by session {first.get('conflicting_session_id')} "
                   f"({first.get('conflicting_starts_at')} .. {first.get('conflicting_ends_at')})")
        return Rejected(s.file, s.line, s.key, BOOKING_CONFLICT, message)
    return Rejected(s.file, s.line, s.key, NOT_IMPORTED, f"scheduling answered {exc}")


# ----- enrollments ----------------------------------------------------------------------------------------------
async def enroll_learners(client: Client, urls: Urls, policy: Policy, results: list[SessionResult],
                          failures: list[dict[str, Any]], concurrency: int, progress: bool) -> None:
    todo = [r for r in results if r.session.learners > 0]
    with tqdm(total=sum(r.session.learners for r in todo), desc="enroll   ", unit="learner",
              disable=not progress) as bar:
        async def one(result: SessionResult) -> None:
            s = result.session
            learners = s.learner_ids()
            for start in range(0, len(learners), BATCH_LIMIT):
                chunk = learners[start:start + BATCH_LIMIT]
                body = {"learners": chunk, "as_of": _iso(s.enroll_as_of(policy)), "backdated": True}
                try:
                    _, answer = await client.call("POST", f"{urls.enrollment}/sessions/{s.session_id}/enrollments/batch",
                                                  body, ok=(200,))
                except ServiceError as exc:
                    failures.append({"step": "enrollment", "session_id": s.session_id, "learners": len(chunk),
                                     "error": str(exc)})
                    bar.update(len(chunk))
                    continue
                for entry in answer.get("results", []):
                    if entry.get("status") == "enrolled":
                        result.enrolled_ids.append(entry["enrollment_id"])
                    elif entry.get("status") == "waitlisted":
                        result.waitlisted += 1
                bar.update(len(chunk))

        await _bounded(todo, concurrency, one)


# ----- attendance -----------------------------------------------------------------------------------------------
def attendees(result: SessionResult) -> list[str]:
    """The first ``attendance`` enrolled learners attended; never more than were enrolled."""
    if result.session.attendance is None:
        return []
    return result.enrolled_ids[:result.session.attendance]


async def record_attendance(client: Client, urls: Urls, results: list[SessionResult],
                            failures: list[dict[str, Any]], concurrency: int, progress: bool) -> None:
    """One attendance batch per session (all or nothing in enrollment); sessions concurrently."""
    todo = [r for r in results if attendees(r)]
    with tqdm(total=sum(len(attendees(r)) for r in todo), desc="attend   ", unit="learner",
              disable=not progress) as bar:
        async def one(result: SessionResult) -> None:
            s = result.session
            as_of = _iso(s.attendance_as_of())
            marked = attendees(result)
            for start in range(0, len(marked), BATCH_LIMIT):
                chunk = marked[start:start + BATCH_LIMIT]
                body = {"records": [{"enrollment_id": e, "status": "attended"} for e in chunk], "as_of": as_of,
                        "backdated": True}
                try:
                    _, answer = await client.call("POST", f"{urls.enrollment}/sessions/{s.session_id}/attendance/batch",
                                                  body, ok=(200,))
                except ServiceError as exc:
                    failures.append({"step": "attendance", "session_id": s.session_id, "records": len(chunk),
                                     "error": str(exc)})
                else:
                    result.attended += sum(1 for entry in answer.get("results", [])
                                           if entry.get("attendance") == "attended")
                bar.update(len(chunk))

        await _bounded(todo, concurrency, one)


# ----- invoices -------------------------------------------------------------------------------------------------
async def invoice_planned_costs(client: Client, urls: Urls, policy: Policy, results: list[SessionResult],
                                failures: list[dict[str, Any]], concurrency: int, progress: bool) -> None:
    if not policy.invoice_planned_costs:
        return
    items = [(r.session, c) for r in results for c in r.session.planned_costs]
    with tqdm(total=len(items), desc="invoice  ", unit="invoice", disable=not progress, position=1) as bar:
        async def one(item: tuple[SessionImport, Any]) -> None:
            s, cost = item
            body = {"invoice_ref": f"{s.session_id}-{cost.category}", "cost_centre": s.cost_centre,
                    "period": str(s.year), "category": cost.category, "amount": policy.money(cost.amount),
                    "session_id": s.session_id, "as_of": _iso(s.invoice_as_of(policy)), "backdated": True}
            try:
                await client.call("POST", f"{urls.finance}/costs", body)
            except ServiceError as exc:
                failures.append({"step": "invoice", "session_id": s.session_id, "category": cost.category,
                                 "error": str(exc)})
            bar.update()

        await _bounded(items, concurrency, one)


# ----- all of it ------------------------------------------------------------------------------------------------
async def replay(urls: Urls, policy: Policy, sessions: list[SessionImport], *, concurrency: int = 16,
                 progress: bool = True, headers: dict[str, dict[str, str]] | None = None) -> ReplayOutcome:
    """``headers``: per service name, the Authorization header of a token with that service's role."""
    failures: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0), limits=limits) as http:
        by_url = urls.as_dict()
        client = Client(http, {by_url[name]: h for name, h in (headers or {}).items()})
        loop = asyncio.get_running_loop()

        async def timed(name: str, work: Awaitable[Any]) -> Any:
            started = loop.time()
            try:
                return await work
            finally:
                seconds[name] = round(loop.time() - started, 2)

        await timed("finance_setup", setup_finance(client, urls, policy, failures))
        results, rejected = await timed("schedule", schedule_sessions(client, urls, policy, sessions, concurrency,
                                                                      progress))
        await timed("enroll", enroll_learners(client, urls, policy, results, failures, concurrency, progress))
        # attendance (enrollment) and invoices (finance) do not depend on each other: both at once
        await asyncio.gather(
            timed("attendance", record_attendance(client, urls, results, failures, concurrency, progress)),
            timed("invoices", invoice_planned_costs(client, urls, policy, results, failures, concurrency, progress)),
        )
        requests = {**client.requests, "retried": client.retries}
    return ReplayOutcome(results=results, rejected=rejected, failures=failures, requests=requests, seconds=seconds)
