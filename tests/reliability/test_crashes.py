"""Crashes: a randomly chosen service (never the broker) is killed with SIGKILL at random moments during the load
(random points of its progress) and started again, ``RELIABILITY_KILLS`` (25) times; the client repeats unanswered
commands. After quiescence every projection equals the oracle: nothing lost, nothing applied twice, no figure off
by one.

Replay a failing run with ``RELIABILITY_SEED=<the printed seed>``. Bigger runs: ``RELIABILITY_SESSIONS``,
``RELIABILITY_KILLS``, ``RELIABILITY_CONCURRENCY``.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Callable

import pytest

from devstack.stack import SERVICES, Stack

from .conftest import knob
from .workload import Client, Oracle, Urls, compare, run_load, setup_budgets, stored_events

pytestmark = pytest.mark.integration


class Killer(threading.Thread):
    """SIGKILLs a random running service each time the load passes one of ``points`` (accepted commands, drawn at
    random over the load); each one is started again in its own thread (so several may be down at once)."""

    def __init__(self, stack: Stack, rng: random.Random, points: list[int], progress: Callable[[], int]) -> None:
        super().__init__(daemon=True)
        self.stack, self.rng, self.points, self.progress = stack, rng, sorted(points), progress
        self.kills: dict[str, int] = dict.fromkeys(SERVICES, 0)
        self.down: set[str] = set()
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.errors: list[BaseException] = []
        self.restarters: list[threading.Thread] = []

    @property
    def total(self) -> int:
        return sum(self.kills.values())

    def run(self) -> None:
        pending = list(self.points)
        while pending and not self.done.is_set():
            if self.progress() < pending[0]:
                time.sleep(0.02)  # polls the load's progress
                continue
            with self.lock:
                up = [name for name in SERVICES if name not in self.down]
                if not up:
                    time.sleep(0.02)
                    continue
                name = self.rng.choice(up)
                self.down.add(name)
            pending.pop(0)
            self.stack.processes[name].kill()
            self.kills[name] += 1
            restart = threading.Thread(target=self._restart, args=(name,), daemon=True)
            restart.start()
            self.restarters.append(restart)

    def _restart(self, name: str) -> None:
        try:
            proc = self.stack.processes[name]
            proc.start()
            proc.wait_ready(timeout=90)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)
        finally:
            with self.lock:
                self.down.discard(name)

    def finish(self) -> None:
        self.done.set()
        self.join(timeout=60)
        for t in self.restarters:
            t.join(timeout=120)


def test_services_killed_during_the_load_lose_nothing_and_apply_nothing_twice(tmp_path, report) -> None:
    seed = knob("RELIABILITY_SEED", random.SystemRandom().randrange(10**6))
    sessions = knob("RELIABILITY_SESSIONS", 45)
    minimum_kills = knob("RELIABILITY_KILLS", 25)
    concurrency = knob("RELIABILITY_CONCURRENCY", 10)
    print(f"RELIABILITY_SEED={seed}")
    report(f"crash run: seed {seed} (replay with RELIABILITY_SEED={seed})")
    rng = random.Random(seed)
    with Stack(tmp_path, extra_env={"LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")}) as stack:
        urls = Urls(stack.url("scheduling"), stack.url("enrollment"), stack.url("finance"))
        oracle = Oracle()
        # the kill points: random moments of the load (accepted commands), about 45 commands per session
        expected = sessions * 45
        killer = Killer(stack, rng, [rng.randint(expected // 30, expected * 8 // 10) for _ in range(minimum_kills)],
                        lambda: oracle.commands)

        async def load() -> int:
            client = Client(stack.headers())
            try:
                await setup_budgets(client, urls, oracle)  # before the faults: allocations carry no client id
                killer.start()
                # the load goes on until both the planned sessions ran and every kill happened
                ran = await run_load(client, urls, oracle, "crash", seed, sessions, concurrency,
                                     more=lambda: killer.is_alive() and killer.total < minimum_kills)
                return ran
            finally:
                await client.close()

        started = time.monotonic()
        ran = asyncio.run(load())
        killer.finish()
        assert not killer.errors, killer.errors
        status = stack.wait_quiescent(timeout=180)
        result = asyncio.run(compare(oracle, stack.url("reporting"), stack.url("enrollment"), stack.headers()))
        events = stored_events(status)
        report(f"crashes: {killer.total} ({', '.join(f'{k} {v}' for k, v in killer.kills.items())}), "
               f"sessions: {ran}, commands: {oracle.commands}, events: {events}, lost: {result.lost}, "
               f"duplicated: {result.duplicated} ({time.monotonic() - started:.0f} s)")
        assert killer.total >= minimum_kills
        assert result.differences == [], result.differences[:20]
        assert (result.lost, result.duplicated) == (0, 0)
        # every stored event was seen exactly once by each consumer (its inbox holds each id once)
        assert status["reporting"]["processed_events"] == events
        assert status["reporting"]["dead_lettered"] == 0
