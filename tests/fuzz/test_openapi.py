"""schemathesis against each service's OpenAPI, in process: the ASGI app with a real SQLite store in a temporary
directory; its lifespan is replaced by one that only opens and closes the store, so no outbox relay and no Kafka
consumer start (commands are stored, nothing is published). Requests carry a token holding every role.

Checks on every generated request: no 5xx; every 4xx is JSON with ``error`` and ``message``; a 422 also has
``detail``: a list of ``{"field", "reason"}``; every 2xx is JSON. Bounded: ``FUZZ_EXAMPLES`` cases per operation
(default 40), each service's run counted and printed.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
SERVICES = ("scheduling", "enrollment", "finance", "reporting")
CASES: dict[str, Counter[int]] = {name: Counter() for name in SERVICES}


SEEDED = {"session_id": "fuzz-s1", "cost_centre": "CC-FUZZ"}  # known to the services before the fuzzing starts


async def seed(service: str, store: Any) -> None:
    """What a generated request may then find: a session (scheduling, enrollment) and a budget (finance).
    Once per store (the fuzzing may change them afterwards)."""
    from datetime import UTC, datetime, timedelta

    if await store.get("fuzz-seeded", service) is not None:
        return
    async with store.transaction() as uow:
        await uow.put("fuzz-seeded", service, {"at": datetime.now(UTC).isoformat()})

    from shared.commands import Trace

    start = datetime.now(UTC) + timedelta(days=400)
    plan = {"session_id": SEEDED["session_id"], "course_code": "SWC", "title": "Fuzz", "delivery": "classroom",
            "venue_id": "fuzz-room", "time_zone": "UTC", "capacity": 3, "cost_centre": SEEDED["cost_centre"],
            "slots": [{"starts_at": start.strftime("%Y-%m-%dT09:00"), "ends_at": start.strftime("%Y-%m-%dT17:00")}]}
    if service == "scheduling":
        from services.scheduling.application import handlers
        from services.scheduling.application.commands import ScheduleSession

        await handlers.schedule_session(store, ScheduleSession.model_validate(plan), Trace())
    elif service == "enrollment":
        from services.enrollment.application.policies import HANDLERS
        from shared.contracts.scheduling import SessionScheduled, TimeSlot
        from shared.messaging.envelope import Envelope

        event = SessionScheduled(session_id=SEEDED["session_id"], occurred_at=datetime.now(UTC), course_code="SWC",
                                 title="Fuzz", delivery="classroom", venue_id="fuzz-room", time_zone="UTC",
                                 capacity=3, cost_centre=SEEDED["cost_centre"],
                                 slots=[TimeSlot(starts_at=start, ends_at=start + timedelta(hours=8))])
        async with store.transaction() as uow:
            await HANDLERS[SessionScheduled](uow, Envelope(data=event))
    elif service == "finance":
        from services.finance.application import handlers
        from services.finance.application.commands import AllocateBudget

        await handlers.allocate_budget(store, AllocateBudget.model_validate(
            {"cost_centre": SEEDED["cost_centre"], "period": str(start.year),
             "amount": {"amount": "1000.00", "currency": "EUR"}}), Trace())


def map_path_parameters(_: Any, path_parameters: dict[str, Any] | None) -> dict[str, Any] | None:
    """Half of the generated ids are replaced by the seeded ones, so requests also reach existing records."""
    for name, value in SEEDED.items():
        if path_parameters and name in path_parameters and len(str(path_parameters[name])) % 2 == 0:
            path_parameters[name] = value
    return path_parameters


def build_app(service: str, workdir: Path) -> Any:
    bootstrap = importlib.import_module(f"services.{service}.bootstrap")
    settings_mod = importlib.import_module(f"services.{service}.settings")
    cls = next(v for k, v in vars(settings_mod).items() if k.endswith("Settings") and k != "ServiceSettings")
    extra = {"session_wait_seconds": 0} if service == "enrollment" else {}
    app = bootstrap.build(cls(store_url=f"sqlite:///{workdir / (service + '.db')}", LOG_LEVEL="ERROR", **extra))
    store = app.state.runtime.store

    @asynccontextmanager
    async def store_only(_: Any) -> AsyncIterator[None]:  # no relay, no Kafka consumer: commands only stored
        await store.open()
        await seed(service, store)
        try:
            yield
        finally:
            await store.close()

    app.router.lifespan_context = store_only
    return app


_WORKDIR = Path(tempfile.mkdtemp(prefix="ilt-fuzz-"))


# built at import (cheap: nothing is opened before the first request); schemathesis' lazy fixture loader does not
# work with this pytest, so the schemas are loaded eagerly from the apps
# the operations endpoints (/healthz, /readyz, /status, /metrics) take no input and are not fuzzed (/readyz says
# 503 here: no broker, by design)
SCHEMAS = {name: schemathesis.openapi.from_asgi("/openapi.json", build_app(name, _WORKDIR))
           .exclude(path_regex=r"^/(healthz|readyz|status|metrics)$") for name in SERVICES}


def check(service: str, case: Any, response: Any) -> None:
    status = response.status_code
    CASES[service][status // 100 * 100] += 1
    where = f"{case.method} {case.formatted_path} -> {status}: {response.text[:500]}"
    assert status < 500, where
    content_type = response.headers.get("content-type") or [""]  # schemathesis: header -> list of values
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    if not content_type.startswith("application/json") and status < 400:
        return  # a document in another format (e.g. the AsyncAPI description in YAML)
    body = response.json()  # every other answer is JSON
    if 400 <= status < 500:
        assert isinstance(body, dict), where
        assert isinstance(body.get("error"), str) and body["error"], where
        assert isinstance(body.get("message"), str) and body["message"], where
        if status == 422:
            detail = body.get("detail")
            assert isinstance(detail, list) and detail, where
            for item in detail:
                assert isinstance(item.get("field"), str) and item["field"], where
                assert isinstance(item.get("reason"), str) and item["reason"], where


FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck))


def _run(service: str, case: Any, bearer: Any) -> None:
    case.headers = {**(case.headers or {}), **bearer()}  # replaces the generated (empty) bearer token
    response = case.call()
    check(service, case, response)


@SCHEMAS["scheduling"].hooks.apply(map_path_parameters)
@SCHEMAS["scheduling"].parametrize()
@FUZZ
def test_scheduling_api_survives_generated_requests(case: Any, bearer: Any) -> None:
    _run("scheduling", case, bearer)


@SCHEMAS["enrollment"].hooks.apply(map_path_parameters)
@SCHEMAS["enrollment"].parametrize()
@FUZZ
def test_enrollment_api_survives_generated_requests(case: Any, bearer: Any) -> None:
    _run("enrollment", case, bearer)


@SCHEMAS["finance"].hooks.apply(map_path_parameters)
@SCHEMAS["finance"].parametrize()
@FUZZ
def test_finance_api_survives_generated_requests(case: Any, bearer: Any) -> None:
    _run("finance", case, bearer)


@SCHEMAS["reporting"].hooks.apply(map_path_parameters)
@SCHEMAS["reporting"].parametrize()
@FUZZ
def test_reporting_api_survives_generated_requests(case: Any, bearer: Any) -> None:
    _run("reporting", case, bearer)


def test_zz_every_service_was_fuzzed_and_the_figures_are_printed(capsys) -> None:
    """(runs last in this module) the figures: cases per service and status class (200 = 2xx, 400 = 4xx)."""
    with capsys.disabled():
        for name, counts in CASES.items():
            print(f"\nfuzz {name}: {sum(counts.values())} cases, "
                  + ", ".join(f"{k // 100}xx: {v}" for k, v in sorted(counts.items())))
    ran = [name for name, counts in CASES.items() if counts]
    if ran:  # (a single fuzz test selected with -k fuzzes one service only)
        assert all(sum(CASES[n].values()) >= 100 for n in ran), CASES
