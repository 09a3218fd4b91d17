"""The pipeline measurements: ingest, projection, latency, rebuild and memory, against services run as processes
(``devstack.stack.Stack``) on the same broker as the raw ceiling."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from devstack.stack import Stack

CONSUMED = "ilt_events_consumed_total"


def headers(stack: Stack, role: str | None = None) -> dict[str, str]:
    """The Authorization header the stack issued for ``role`` ({} where the services run without tokens)."""
    fn = getattr(stack, "headers", None)
    return fn(role) if fn is not None else {}


def rss_mb(stack: Stack) -> dict[str, float]:
    out = {}
    for name, proc in stack.processes.items():
        if proc.process is None:
            continue
        try:
            for line in Path(f"/proc/{proc.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out[name] = round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
    return out


def consumed(client: httpx.Client, url: str) -> int:
    """Events the service's consumer has taken (applied, ignored or duplicate), from its /metrics."""
    total = 0.0
    for line in client.get(f"{url}/metrics").text.splitlines():
        if line.startswith(CONSUMED + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def follow(client: httpx.Client, url: str, expected: int, timeout: float, poll: float = 0.05) -> tuple[float, float, int]:
    """Poll until ``expected`` events are consumed: (time of the first poll that saw any, time of the last, count
    seen at that first poll)."""
    deadline = time.monotonic() + timeout
    first: float | None = None
    first_count = 0
    while True:
        n = consumed(client, url)
        now = time.perf_counter()
        if n and first is None:
            first, first_count = now, n
        if n >= expected:
            return first or now, now, first_count
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} consumed {n} of {expected} events within {timeout}s")
        time.sleep(poll)


def schedule_sessions(stack: Stack, plans: list[dict[str, Any]], concurrency: int = 8) -> None:
    url = stack.url("scheduling")

    async def run() -> None:
        sem = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=url, headers=headers(stack, "scheduler"), timeout=60) as client:
            async def one(plan: dict[str, Any]) -> None:
                async with sem:
                    r = await client.post("/sessions", json=plan)
                    if r.status_code not in (200, 201):
                        raise RuntimeError(f"scheduling refused a bench session: {r.status_code} {r.text[:300]}")
            await asyncio.gather(*(one(p) for p in plans))

    asyncio.run(run())


def ingest(stack: Stack, sessions: list[str], batch: int, seed: int, concurrency: int) -> dict[str, Any]:
    """Bulk enrollments (``POST /sessions/{id}/enrollments/batch``, one session per batch) until every
    ``LearnerEnrolled`` is stored and published (enrollment's outbox empty)."""
    url = stack.url("enrollment")
    expected = len(sessions) * batch
    with httpx.Client(timeout=10) as c:
        before = c.get(f"{url}/status").json()["stored_events"]
    latencies: list[float] = []

    async def run() -> float:
        sem = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=url, headers=headers(stack, "enroller"), timeout=120) as client:
            async def one(i: int, sid: str) -> None:
                learners = [f"learner-{seed}-{i:05d}-{k:05d}" for k in range(batch)]
                async with sem:
                    t = time.perf_counter()
                    r = await client.post(f"/sessions/{sid}/enrollments/batch", json={"learners": learners})
                    latencies.append(time.perf_counter() - t)
                    if r.status_code != 200 or r.json()["created"] != batch:
                        raise RuntimeError(f"batch enrollment failed: {r.status_code} {r.text[:300]}")
            started = time.perf_counter()
            await asyncio.gather(*(one(i, sid) for i, sid in enumerate(sessions)))
            return time.perf_counter() - started

    started = time.perf_counter()
    accepted_seconds = asyncio.run(run())
    with httpx.Client(timeout=10) as c:
        deadline = time.monotonic() + 300
        while True:
            s = c.get(f"{url}/status").json()
            if s["stored_events"] - before >= expected and s["outbox_backlog"] == 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"enrollment did not publish the ingest: {s}")
            time.sleep(0.025)  # /status counts the stored events: polling it costs the service CPU
    published_seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "events": expected,
        "batches": len(sessions),
        "batch_size": batch,
        "concurrency": concurrency,
        "accepted_per_s": expected / accepted_seconds,
        "stored_and_published_per_s": expected / published_seconds,
        "seconds": published_seconds,
        "batch_request_p50_ms": pct(latencies, 50) * 1000,
        "batch_request_p99_ms": pct(latencies, 99) * 1000,
    }


def projection(stack: Stack, expected: int, timeout: float = 600) -> dict[str, Any]:
    """Reporting (started on topics already holding ``expected`` events, empty store) applying them all."""
    url = stack.url("reporting")
    with httpx.Client(timeout=30) as client:
        first, last, first_count = follow(client, url, expected, timeout)
    rate = (expected - first_count) / (last - first) if last > first else float("nan")
    return {"events": expected, "applied_per_s": rate, "seconds": last - first}


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))
    return sorted(values)[k]


def latency(stack: Stack, sessions: list[str], rate: float, seconds: float, seed: int, course: str,
            batch: int = 1, poll_seconds: float = 0.005) -> dict[str, Any]:
    """Open loop: enrollment commands at a fixed rate (events/s; ``batch`` learners per command), round robin
    over ``sessions``; a watcher polls reporting's read API and notes when each command's enrollment is counted.

    Command -> visible: from sending the command to the first poll answer that counts it (an upper bound: the
    poll interval and the poll's own time are included). HTTP latency: send -> response."""
    enroll_url, report_url = stack.url("enrollment"), stack.url("reporting")
    commands = int(rate * seconds / batch)
    interval = batch / rate
    sent_at: list[float] = [0.0] * commands
    answered: list[float] = [0.0] * commands
    visible: list[float] = [0.0] * commands
    ordinal: list[tuple[str, int]] = []  # command -> (session, enrolled count that shows it)
    counts: dict[str, int] = {}
    for i in range(commands):
        sid = sessions[i % len(sessions)]
        counts[sid] = counts.get(sid, 0) + batch
        ordinal.append((sid, counts[sid]))
    errors: list[str] = []

    async def run() -> dict[str, Any]:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(base_url=enroll_url, headers=headers(stack, "enroller"), timeout=30,
                                     limits=limits) as cmd, \
                httpx.AsyncClient(base_url=report_url, headers=headers(stack, "reader"), timeout=30) as read:
            done = asyncio.Event()
            pending = set(range(commands))

            async def send(i: int) -> None:
                sid, _ = ordinal[i]
                learners = [f"lat-{seed}-{i:07d}-{k}" for k in range(batch)]
                sent_at[i] = time.perf_counter()
                try:
                    if batch == 1:
                        r = await cmd.post(f"/sessions/{sid}/enrollments", json={"learner_id": learners[0]})
                    else:
                        r = await cmd.post(f"/sessions/{sid}/enrollments/batch", json={"learners": learners})
                    if r.status_code not in (200, 201):
                        errors.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                answered[i] = time.perf_counter()

            async def watch() -> None:
                while pending and not done.is_set():
                    r = await read.get("/occupancy/sessions", params={"course_code": course})
                    now = time.perf_counter()
                    enrolled = {s["session_id"]: s["enrolled"] for s in r.json()["sessions"]}
                    for i in [i for i in pending if sent_at[i] and enrolled.get(ordinal[i][0], 0) >= ordinal[i][1]]:
                        visible[i] = now
                        pending.discard(i)
                    await asyncio.sleep(poll_seconds)

            watcher = asyncio.create_task(watch())
            tasks = []
            start = time.perf_counter()
            behind = 0.0
            for i in range(commands):
                due = start + i * interval
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    behind = max(behind, -delay)
                tasks.append(asyncio.create_task(send(i)))
            offered_seconds = time.perf_counter() - start
            await asyncio.gather(*tasks)
            try:
                await asyncio.wait_for(watcher, timeout=60)
            except TimeoutError:
                done.set()
            return {"offered_seconds": offered_seconds, "max_behind_schedule_ms": behind * 1000}

    timing = asyncio.run(run())
    to_visible = [visible[i] - sent_at[i] for i in range(commands) if visible[i]]
    http = [answered[i] - sent_at[i] for i in range(commands) if answered[i]]
    return {
        "target_events_per_s": rate,
        "offered_events_per_s": commands * batch / timing["offered_seconds"],
        "events_per_command": batch,
        "commands": commands,
        "seconds": seconds,
        "errors": len(errors),
        "first_errors": errors[:3],
        "not_visible": commands - len(to_visible),
        "max_behind_schedule_ms": timing["max_behind_schedule_ms"],
        "visible_p50_ms": pct(to_visible, 50) * 1000,
        "visible_p95_ms": pct(to_visible, 95) * 1000,
        "visible_p99_ms": pct(to_visible, 99) * 1000,
        "visible_max_ms": max(to_visible) * 1000 if to_visible else float("nan"),
        "http_p50_ms": pct(http, 50) * 1000,
        "http_p99_ms": pct(http, 99) * 1000,
        "poll_interval_ms": poll_seconds * 1000,
    }


def rebuild(workdir: Path, bootstrap: str, expected: int, timeout: float) -> tuple[dict[str, Any], Stack]:
    """A reporting service with an empty store (new consumer group on a broker holding ``expected`` events): time
    from starting the process until every event is applied, and the apply rate once it runs."""
    started = time.perf_counter()
    stack = Stack(workdir, services=["reporting"], bootstrap_servers=bootstrap).start()
    with httpx.Client(timeout=60) as client:
        first, last, first_count = follow(client, stack.url("reporting"), expected, timeout, poll=0.1)
    return {
        "events": expected,
        "seconds_from_process_start": last - started,
        "seconds_applying": last - first,
        "applied_per_s": (expected - first_count) / (last - first) if last > first else float("nan"),
    }, stack


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def env_info() -> dict[str, Any]:
    import platform

    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "system": platform.platform()}
