"""Redelivery and rebalance: after a load, every stored event is delivered a second time (``python -m ops replay`` of
the three producers) while a second reporting instance has joined reporting's consumer group (a rebalance: both members
share the partitions of the redelivery), then leaves it (another rebalance). The second instance is a real second process of
the reporting service on the same store file (SQLite in WAL mode takes writers from several processes: the inbox
that makes effects happen once is shared, as it would be with one database behind two replicas).

Every projection is unchanged and still equals the oracle; reporting's processed count does not move (every
redelivered event is skipped), the second instance did consume (duplicates) before it left.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import httpx
import pytest

from devstack.broker import EmbeddedBroker, free_port
from devstack.stack import ServiceProcess, Stack
from ops.__main__ import main as ops_main

from .conftest import knob
from .workload import Client, Oracle, Urls, compare, run_load, setup_budgets, stored_events

pytestmark = pytest.mark.integration


def duplicates_seen(url: str) -> float:
    """ilt_events_consumed_total{outcome="duplicate"} of one process."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "ilt_events_consumed_total" and s.labels.get("outcome") == "duplicate")


def snapshot(stack: Stack) -> dict:
    with httpx.Client(timeout=30, headers=stack.headers("reader")) as http:
        rep = stack.url("reporting")
        return {"sessions": sorted(http.get(f"{rep}/occupancy/sessions").json()["sessions"],
                                   key=lambda s: s["session_id"]),
                "totals": http.get(f"{rep}/occupancy/totals").json(),
                "budgets": http.get(f"{rep}/budgets").json()}


def wait_for(what: str, probe, timeout: float = 60.0):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while not (result := probe()):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)
    return result


def test_every_event_delivered_twice_across_a_rebalance_changes_nothing(tmp_path, report) -> None:
    seed = knob("RELIABILITY_SEED", random.SystemRandom().randrange(10**6))
    sessions = knob("RELIABILITY_REDELIVERY_SESSIONS", 40)
    broker = EmbeddedBroker(log_file=tmp_path / "broker.log").start()
    try:
        with Stack(tmp_path, bootstrap_servers=broker.bootstrap_servers,
                   extra_env={"LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")}) as stack:
            urls = Urls(stack.url("scheduling"), stack.url("enrollment"), stack.url("finance"))
            oracle = Oracle()

            async def load() -> None:
                client = Client(stack.headers())
                try:
                    await setup_budgets(client, urls, oracle)
                    await run_load(client, urls, oracle, "redeliver", seed, sessions, 8)
                finally:
                    await client.close()

            asyncio.run(load())
            status = stack.wait_quiescent(timeout=120)
            events = stored_events(status)
            before = snapshot(stack)
            first = asyncio.run(compare(oracle, stack.url("reporting"), urls.enrollment, stack.headers()))
            assert first.differences == []
            processed = {n: s["processed_events"] for n, s in status.items()}

            # a second reporting instance joins the group (rebalance) ...
            main = stack.processes["reporting"]
            env = {**main.env, "REPORTING_HTTP_PORT": str(free_port())}
            second = ServiceProcess("reporting", int(env["REPORTING_HTTP_PORT"]), env, tmp_path / "reporting-2.log")
            second.start()
            try:
                second.wait_ready()
                # ... every event is delivered a second time ...
                for name in ("scheduling", "enrollment", "finance"):
                    assert ops_main(["replay", "--service", name, "--no-progress",
                                     "--store-url", f"sqlite:///{tmp_path / (name + '.db')}",
                                     "--bootstrap-servers", broker.bootstrap_servers]) == 0
                # ... the second instance takes its share of the partitions, then leaves (another rebalance)
                # (every event seen again, across both members, and the second took a share)
                wait_for("the redelivery consumed by both members",
                         lambda: duplicates_seen(second.url) > 0
                         and duplicates_seen(second.url) + duplicates_seen(main.url) >= events, 90)
                taken = duplicates_seen(second.url)
            finally:
                second.stop()
            after_status = stack.wait_quiescent(timeout=120)
            redelivered_main = duplicates_seen(main.url)
            after = snapshot(stack)
            second_compare = asyncio.run(compare(oracle, stack.url("reporting"), urls.enrollment, stack.headers()))
    finally:
        broker.stop()
    report(f"redelivery: {events} events delivered twice, reporting instances 2 (join + leave: 2 rebalances), "
           f"duplicates skipped by the first {redelivered_main:.0f} and by the second {taken:.0f}, "
           f"commands: {oracle.commands}, lost: {second_compare.lost}, duplicated: {second_compare.duplicated}")
    assert after == before
    assert second_compare.differences == [], second_compare.differences[:20]
    # nothing was applied again: each consumer's inbox holds exactly what it held
    assert {n: s["processed_events"] for n, s in after_status.items()} == processed
    assert redelivered_main + taken >= events  # reporting saw every event again, across both members
