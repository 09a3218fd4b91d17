"""Broker loss: the embedded broker keeps everything in memory, so stopping it loses every topic, record and offset.

1. a load; every service caught up;
2. the broker is stopped: commands are still accepted and stored (enrollments on known sessions, cancellations,
   invoices, new sessions), their events wait in the outboxes (backlog > 0 at the producers);
3. a fresh broker on the same port (topics created first); the services reconnect by themselves, their outboxes
   publish the backlog; ``python -m ops replay`` of each producer republishes everything stored;
4. more load on the sessions scheduled while the broker was away; after quiescence every projection equals the
   oracle, and nothing was applied twice (each consumer's inbox holds each event once).

(``tests/integration/test_ops.py`` proves the same replay with the services restarted on the new broker and reporting
rebuilt from the replay alone.)
"""

from __future__ import annotations

import asyncio
import os
import random

import httpx
import pytest

from devstack.broker import EmbeddedBroker
from devstack.stack import Stack
from ops.__main__ import main as ops_main

from .conftest import knob
from .workload import (
    COST_CENTRES,
    INVOICE,
    Client,
    Oracle,
    Urls,
    compare,
    plan,
    run_load,
    session_script,
    setup_budgets,
    stored_events,
)

pytestmark = pytest.mark.integration


def test_commands_accepted_while_the_broker_is_gone_and_a_replay_on_a_fresh_broker(tmp_path, report) -> None:
    seed = knob("RELIABILITY_SEED", random.SystemRandom().randrange(10**6))
    sessions = knob("RELIABILITY_BROKER_LOSS_SESSIONS", 30)
    extra = 10  # sessions scheduled while the broker is away
    env = {"LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")}
    broker = EmbeddedBroker(log_file=tmp_path / "broker-1.log").start()
    port = broker.port
    try:
        with Stack(tmp_path, bootstrap_servers=broker.bootstrap_servers, extra_env=env) as stack:
            urls = Urls(stack.url("scheduling"), stack.url("enrollment"), stack.url("finance"))
            oracle = Oracle()
            http = httpx.Client(timeout=10)

            async def first_load() -> None:
                client = Client(stack.headers())
                try:
                    await setup_budgets(client, urls, oracle)
                    await run_load(client, urls, oracle, "loss", seed, sessions, 8)
                finally:
                    await client.close()

            asyncio.run(first_load())
            stack.wait_quiescent(timeout=120)

            broker.stop()  # every topic, record and consumer-group offset is gone

            async def while_down() -> int:
                client = Client(stack.headers(), timeout=30)
                accepted = 0
                try:
                    for n in range(sessions, sessions + extra):  # new sessions: stored by scheduling
                        r = random.Random(seed * 100003 + n)
                        capacity, cc = r.randint(3, 15), r.choice(COST_CENTRES)
                        await client.send("POST", f"{urls.scheduling}/sessions", plan(f"loss-s{n}", n, capacity, cc))
                        accepted += 1
                    for n in range(0, sessions, 2):  # enrollments and a cancellation on known sessions
                        sid = f"loss-s{n}"
                        if oracle.sessions[sid].cancelled:
                            continue
                        learners = [f"{sid}-late{k}" for k in range(8)]
                        r, _ = await client.send("POST", f"{urls.enrollment}/sessions/{sid}/enrollments/batch",
                                                 {"learners": learners}, ok=(200,))
                        for learner, result in zip(learners, r.json()["results"], strict=True):
                            oracle.enrolled(sid, learner, result)
                        eid = oracle.sessions[sid].enrolled[0]
                        r, tries = await client.send("POST", f"{urls.enrollment}/enrollments/{eid}/cancel", {})
                        oracle.cancelled(eid, sid, r.json(), first_answer=tries == 1)
                        ref = f"INV-late-{sid}"
                        cc = oracle.sessions[sid].cost_centre
                        await client.send("POST", f"{urls.finance}/costs", {
                            "invoice_ref": ref, "cost_centre": cc, "period": str(plan(sid, n, 1, cc)["slots"][0]
                                                                                  ["starts_at"][:4]),
                            "category": "venue_hire", "amount": {"amount": f"{INVOICE:.2f}", "currency": "EUR"},
                            "session_id": sid})
                        oracle.invoiced(ref, cc, INVOICE)
                        accepted += len(learners) + 2
                    return accepted
                finally:
                    await client.close()

            accepted_while_down = asyncio.run(while_down())
            backlog = {n: http.get(f"{stack.url(n)}/status").json()["outbox_backlog"]
                       for n in ("scheduling", "enrollment", "finance")}
            assert all(v > 0 for v in backlog.values()), backlog

            broker = EmbeddedBroker(port=port, log_file=tmp_path / "broker-2.log").start()  # topics created first
            for name in ("scheduling", "enrollment", "finance"):
                # a replay is harmless to repeat: tried again if the fresh broker refuses the first batches
                for attempt in range(5):
                    try:
                        assert ops_main(["replay", "--service", name, "--no-progress",
                                         "--store-url", f"sqlite:///{tmp_path / (name + '.db')}",
                                         "--bootstrap-servers", broker.bootstrap_servers]) == 0
                        break
                    except Exception:
                        if attempt == 4:
                            raise

            async def after() -> None:
                client = Client(stack.headers())
                try:
                    await asyncio.gather(*(session_script(client, urls, oracle, "loss", n,
                                                          random.Random(seed * 100003 + n))
                                           for n in range(sessions, sessions + extra)))
                finally:
                    await client.close()

            asyncio.run(after())
            status = stack.wait_quiescent(timeout=180)
            result = asyncio.run(compare(oracle, stack.url("reporting"), urls.enrollment, stack.headers()))
            http.close()
    finally:
        broker.stop()
    events = stored_events(status)
    report(f"broker loss: commands accepted while it was gone: {accepted_while_down} (outbox backlog {backlog}), "
           f"replayed on a fresh broker: {events} events, commands: {oracle.commands}, lost: {result.lost}, "
           f"duplicated: {result.duplicated}")
    assert result.differences == [], result.differences[:20]
    assert (result.lost, result.duplicated) == (0, 0)
    assert status["reporting"]["processed_events"] == events  # each event applied once
