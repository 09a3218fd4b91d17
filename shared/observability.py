"""Logs and metrics around HTTP commands and stored events, done once here instead of in every handler.

- ``observe_store(store)`` wraps the store's transactions so that the events a transaction appended are counted
  (``ilt_events_stored_total``) and, once it committed, handed to the HTTP request that is running it.
- ``RequestObserver`` (ASGI middleware) counts requests per route template and status, measures latency, binds the
  request's correlation and causation ids (``X-Correlation-Id``, ``X-Request-Id``) to every log line written while
  it runs, and writes one ``command handled`` line per command (any method but GET/HEAD/OPTIONS) naming the events
  it stored. Bodies are never logged: they may hold learner data.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import structlog

from shared import metrics
from shared.messaging.envelope import Envelope
from shared.store.port import RecordedEvent, Store, UnitOfWork

log = structlog.get_logger()

MAX_LOGGED_EVENT_IDS = 50
QUERY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# the events committed while the current HTTP request runs (None outside a request)
_stored_in_request: contextvars.ContextVar[list[Envelope] | None] = contextvars.ContextVar(
    "ilt_stored_in_request", default=None
)


class _RecordingUnitOfWork(UnitOfWork):
    """Delegates to the adapter's unit of work and remembers what was appended."""

    def __init__(self, inner: UnitOfWork) -> None:
        self._inner = inner
        self.appended_events: list[Envelope] = []

    async def append(self, stream_id: str, expected_version: int, events: Sequence[Envelope]) -> int:
        version = await self._inner.append(stream_id, expected_version, events)
        self.appended_events.extend(events)
        return version

    # the rest is delegated with its arguments as given, so it keeps whatever signature the port has
    async def read_stream(self, *args: Any, **kwargs: Any) -> list[RecordedEvent]:
        return await self._inner.read_stream(*args, **kwargs)

    async def claim(self, *args: Any, **kwargs: Any) -> bool:
        return await self._inner.claim(*args, **kwargs)

    async def claim_many(self, *args: Any, **kwargs: Any) -> list[bool]:
        return await self._inner.claim_many(*args, **kwargs)

    @property
    def memo(self) -> dict[Any, Any]:  # the adapter's unit of work commits: memo and deferred writes live there
        return self._inner.memo

    def defer(self, *args: Any, **kwargs: Any) -> None:
        self._inner.defer(*args, **kwargs)

    async def run_deferred(self) -> None:
        await self._inner.run_deferred()

    async def get(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        return await self._inner.get(*args, **kwargs)

    async def put(self, *args: Any, **kwargs: Any) -> None:
        await self._inner.put(*args, **kwargs)

    async def delete(self, *args: Any, **kwargs: Any) -> None:
        await self._inner.delete(*args, **kwargs)

    async def save_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        await self._inner.save_checkpoint(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # adapter-specific extras
        return getattr(self._inner, name)


def observe_store(store: Store) -> Store:
    """Wrap ``store.transaction`` (on this instance only; signatures unchanged). Returns the same store."""
    if getattr(store, "_ilt_observed", False):
        return store
    inner: Callable[[], AbstractAsyncContextManager[UnitOfWork]] = store.transaction

    @asynccontextmanager
    async def transaction() -> AsyncIterator[UnitOfWork]:
        async with inner() as uow:
            recording = _RecordingUnitOfWork(uow)
            yield recording
        # committed
        if recording.appended_events:
            for envelope in recording.appended_events:
                metrics.EVENTS_STORED.labels(envelope.type).inc()
            stored = _stored_in_request.get()
            if stored is not None:
                stored.extend(recording.appended_events)

    store.transaction = transaction  # type: ignore[method-assign]
    store._ilt_observed = True  # type: ignore[attr-defined]
    return store


class RequestObserver:
    """ASGI middleware: HTTP metrics, correlation ids bound to log lines, one log line per command."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope.get("method", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        ids = {"correlation_id": headers.get("x-correlation-id", "")[:200],
               "causation_id": headers.get("x-request-id", "")[:200]}
        ids = {k: v for k, v in ids.items() if v}
        status = 500
        stored: list[Envelope] = []
        token = _stored_in_request.set(stored)

        async def observed_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with structlog.contextvars.bound_contextvars(**ids):
            try:
                await self.app(scope, receive, observed_send)
            except asyncio.CancelledError:
                status = 499  # the client went away (or the server is stopping) before the answer
                raise
            except BaseException:
                status = 500
                raise
            finally:
                _stored_in_request.reset(token)
                elapsed = time.perf_counter() - started
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
                metrics.HTTP_SECONDS.labels(method, route).observe(elapsed)
                if method not in QUERY_METHODS:
                    _log_command(method, route, scope.get("path", ""), status, elapsed, ids, stored)


def _log_command(method: str, route: str, path: str, status: int, elapsed: float, ids: dict[str, str],
                 stored: list[Envelope]) -> None:
    fields: dict[str, Any] = {"method": method, "route": route, "path": path, "status": status,
                              "duration_ms": round(elapsed * 1000, 1), "events_stored": len(stored)}
    if stored:
        fields["event_ids"] = [e.id for e in stored[:MAX_LOGGED_EVENT_IDS]]
        if len(stored) > MAX_LOGGED_EVENT_IDS:
            fields["event_ids_truncated"] = True
        fields["event_types"] = dict(Counter(e.type for e in stored))
        if len(stored) == 1:
            fields["event_id"], fields["event_type"] = stored[0].id, stored[0].type
        if "correlation_id" not in ids and stored[0].correlation_id:
            fields["correlation_id"] = stored[0].correlation_id  # the chain this command started
    if status >= 500:
        log.error("command failed", **fields)
    elif status >= 400:
        log.info("command rejected", **fields)
    else:
        log.info("command handled", **fields)
