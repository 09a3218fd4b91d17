"""Wakes requests that wait for a session enrollment has not heard of yet.

A learner may be enrolled right after scheduling answered, before scheduling's event reached enrollment. The
request then waits (up to a deadline) for that event; the consumer calls ``notify`` after it applied an event
(``ServiceRuntime.on_applied``), which wakes the requests waiting for that session. No polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class SessionArrivals:
    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}

    def notify(self, envelope: Any) -> None:
        session_id = getattr(envelope.data, "session_id", None)
        for event in self._waiting.get(session_id, ()) if session_id else ():
            event.set()

    @property
    def waiting(self) -> int:
        return sum(len(v) for v in self._waiting.values())

    async def wait_for(self, session_id: str, lookup: Callable[[], Awaitable[T | None]], timeout: float) -> T | None:
        """``lookup()`` until it finds something, re-run each time an event of the session was applied.

        Returns None when the deadline passed without it."""
        wake = asyncio.Event()
        self._waiting.setdefault(session_id, set()).add(wake)  # registered before the first look: no lost wake-up
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                found = await lookup()
                if found is not None:
                    return found
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                try:
                    await asyncio.wait_for(wake.wait(), remaining)
                except TimeoutError:
                    pass
                wake.clear()
        finally:
            waiters = self._waiting.get(session_id)
            if waiters is not None:
                waiters.discard(wake)
                if not waiters:
                    del self._waiting[session_id]
