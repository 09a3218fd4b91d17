"""The process around a service: store, outbox relay, Kafka consumer and HTTP API, started and stopped together.

Every service's ``bootstrap.py`` builds one ``ServiceRuntime`` and hands it its HTTP routers and event handlers;
so all four services start, stop, report health, status and metrics and write logs the same way.

Shutdown (SIGTERM/SIGINT; uvicorn first stops accepting connections and lets running requests finish, then runs
``ServiceRuntime.stop``): the Kafka consumer stops fetching and the batch being applied finishes (its offsets are
committed after its transaction) or, past FastStream's graceful timeout, is cancelled: its transaction rolls back
and nothing of it is committed, so it is delivered again after the restart (the inbox skips what was stored).
Then the outbox relay publishes what is still pending, the producer and the store are closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi.responses import JSONResponse, Response
from faststream.kafka import KafkaBroker

from shared import metrics
from shared.contracts.topics import dead_letter_topic
from shared.errors import CommandRejected
from shared.logging import configure_logging
from shared.messaging.consumer import DEAD_LETTERS, EventConsumer, Handler
from shared.messaging.kafka import Producer, missing_topics
from shared.messaging.relay import OutboxRelay
from shared.observability import RequestObserver, observe_store
from shared.settings import ServiceSettings
from shared.store import Store, open_store

log = structlog.get_logger()


class ServiceRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        *,
        publishes: bool,
        subscribes_to: tuple[str, ...] = (),
        handlers: dict[type, Handler] | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.service_name
        self.store = observe_store(store or open_store(settings.store_url))
        security = settings.kafka_security()
        self.producer = Producer(settings.kafka_bootstrap_servers, security)
        self.relay = (
            OutboxRelay(self.store, self.producer, batch_size=settings.outbox_batch_size) if publishes else None
        )
        self.subscribes_to = subscribes_to
        self.broker: KafkaBroker | None = None
        self.consumer: EventConsumer | None = None
        self.on_applied: list[Callable[[Any], None]] = []
        self._consumer_start: asyncio.Task[None] | None = None
        self._consumer_started = False
        self._consumer_error = "not started"
        metrics.SERVICE.labels(self.name).set(1)
        if subscribes_to:
            # FastStream's own warnings and errors (a consume loop that failed and is restarted, a Kafka error it
            # waits out) reach the service's log through the standard-library handler (warnings and up; not its
            # "faststream" logger, which has a handler of its own); its line per message is logged at DEBUG, below
            # that: our consumer logs what matters about each event
            self.broker = KafkaBroker(settings.kafka_bootstrap_servers, logger=logging.getLogger("ilt.faststream"),
                                      log_level=logging.DEBUG, **_broker_security(security), **_consumer_only())
            self.consumer = EventConsumer(
                self.name,
                self.store,
                handlers or {},
                dead_letter=self.producer,
                dead_letter_topic=dead_letter_topic(self.name),
                max_attempts=settings.handler_max_attempts,
                backoff_seconds=settings.handler_backoff_seconds,
                on_applied=self._applied,
            )
            self.consumer.subscribe(self.broker, *subscribes_to,
                                    fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms)

    def _applied(self, envelope: Any) -> None:
        for callback in self.on_applied:
            callback(envelope)

    async def start(self) -> None:
        await self.store.open()
        if self.relay is not None:
            self.store.on_commit.append(self.relay.wake)
            self.relay.start()
        if self.broker is not None:
            # in the background: the HTTP API answers meanwhile (/healthz 200, /readyz 503 naming the consumer)
            self._consumer_start = asyncio.create_task(self._start_consumer(), name="kafka-consumer-start")
        log.info("service started", http=f"{self.settings.http_host}:{self.settings.http_port}",
                 kafka=self.settings.kafka_bootstrap_servers, store=redact(self.settings.store_url))

    async def _start_consumer(self) -> None:
        assert self.broker is not None

        broker = self.broker

        async def start() -> None:
            try:
                await broker.start()
            except Exception:
                try:  # close the clients a failed start opened, or each retry leaks them
                    await broker.stop()
                except Exception:  # noqa: BLE001
                    pass
                raise

        def failed(exc: BaseException) -> None:
            self._consumer_error = f"starting: {type(exc).__name__}"

        await _retrying(start, "kafka consumer", attempts=None, on_error=failed)
        self._consumer_started = True
        self._consumer_error = ""
        log.info("kafka consumer started", topics=list(self.subscribes_to))

    async def stop(self) -> None:
        if self._consumer_start is not None and not self._consumer_start.done():
            self._consumer_start.cancel()
            try:
                await self._consumer_start
            except (asyncio.CancelledError, Exception):
                pass
        if self.broker is not None:
            in_flight = self.consumer.stats.in_flight if self.consumer else 0
            log.info("stopping kafka consumer", records_in_flight=in_flight)
            # FastStream: stop fetching, wait (graceful_timeout, 15 s) for the batch being applied, whose offsets
            # are committed only after its transaction; past that it is cancelled uncommitted (comes back later)
            try:
                await self.broker.stop()
            except Exception as exc:  # noqa: BLE001 - go on closing the rest
                log.warning("kafka consumer did not stop cleanly", error=repr(exc)[:300])
            self._consumer_started = False
            log.info("kafka consumer stopped", processed=self.consumer.stats.processed if self.consumer else 0)
        if self.relay is not None:
            await self.relay.stop()  # publishes what is still pending (events stored right before SIGTERM)
        await self.producer.stop()
        await self.store.close()
        log.info("service stopped")

    async def refresh_metrics(self) -> None:
        """Set the gauges that are read from the store and the consumer (called on each scrape; never raises)."""
        if self.relay is not None:
            try:
                metrics.OUTBOX_BACKLOG.set(await self.store.outbox_backlog())
            except Exception:  # noqa: BLE001 - the scrape still answers with the rest
                pass
        if self.consumer is not None:
            behind, seconds = await self.consumer.lag()
            metrics.LAG_EVENTS.clear()
            for (topic, partition), n in behind.items():
                metrics.LAG_EVENTS.labels(topic, str(partition)).set(n)
            metrics.LAG_SECONDS.set(seconds)

    async def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"service": self.name}
        if self.relay is not None:
            out["stored_events"] = await self.store.event_count()
            out["outbox_backlog"] = await self.store.outbox_backlog()
        if self.consumer is not None:
            out["processed_events"] = await self.store.processed_count(self.name)
            out["dead_lettered"] = len(await self.store.scan(DEAD_LETTERS))
            out["subscribes_to"] = list(self.subscribes_to)
        return out

    async def readiness(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        if self.broker is not None:
            checks["consumer"] = "ok" if self._consumer_started else self._consumer_error or "not started"
        try:
            await self.store.ping()
            checks["store"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["store"] = f"error: {exc}"
        topics = set(self.subscribes_to) | ({dead_letter_topic(self.name)} if self.consumer else set())
        try:
            missing = await asyncio.wait_for(
                missing_topics(self.settings.kafka_bootstrap_servers, sorted(topics), self.settings.kafka_security()),
                timeout=6,
            )
            checks["broker"] = "ok" if not missing else f"missing topics: {', '.join(missing)}"
        except Exception as exc:  # noqa: BLE001
            checks["broker"] = f"unreachable: {type(exc).__name__}"
        return checks


def validation_detail(errors: Any) -> list[dict[str, str]]:
    """pydantic errors as [{field, reason}]: the dotted field path; a JSON syntax error is named as the body."""
    detail = []
    for e in errors:
        if e.get("type") == "json_invalid":
            detail.append({"field": "body", "reason": f"invalid JSON: {e.get('ctx', {}).get('error', e.get('msg'))}"})
            continue
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        detail.append({"field": ".".join(loc) or "body", "reason": e.get("msg", "")})
    return detail


def redact(url: str) -> str:
    """A URL without its password, for logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _consumer_only() -> dict[str, Any]:
    """FastStream's broker only consumes here (dead letters go through our own producer): where FastStream
    supports it, it then opens no producer and no admin client of its own."""
    import inspect

    return {"consumer_only": True} if "consumer_only" in inspect.signature(KafkaBroker.__init__).parameters else {}


def _broker_security(security: dict[str, Any]) -> dict[str, Any]:
    # FastStream takes the same aiokafka connection arguments
    return {k: v for k, v in security.items() if k != "security_protocol" or v != "PLAINTEXT"}


async def _retrying(start: Callable[[], Any], what: str, attempts: int | None = 30,
                    on_error: Callable[[BaseException], None] | None = None) -> None:
    """Call ``start`` until it succeeds, backing off up to 5 s; ``attempts=None`` retries until cancelled."""
    delay = 0.2
    n = 0
    while True:
        n += 1
        try:
            await start()
            return
        except Exception as exc:  # noqa: BLE001
            if attempts is not None and n >= attempts:
                raise
            if on_error is not None:
                on_error(exc)
            log.warning(f"{what} cannot start yet, retrying", error=repr(exc)[:200], retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5)


def create_app(runtime: ServiceRuntime, routers: list[APIRouter], title: str, description: str) -> FastAPI:
    settings = runtime.settings
    configure_logging(runtime.name, settings.log_format, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan)
    app.state.runtime = runtime
    app.add_middleware(RequestObserver)

    @app.exception_handler(CommandRejected)
    async def rejected(_: Request, exc: CommandRejected) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid", "message": "the request is not valid",
                             "detail": validation_detail(exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 401: "unauthorized",
                 403: "forbidden"}
        message = exc.detail if isinstance(exc.detail, str) else "the request cannot be served"
        return JSONResponse({"error": codes.get(exc.status_code, "http_error"), "message": message},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # a bug, not bad input: logged with the exception type and where it happened, never its message or the
        # request body (either may quote a learner's data), answered as JSON
        import traceback

        frames = traceback.extract_tb(exc.__traceback__)[-3:]
        log.error("unexpected error", error_type=type(exc).__name__,
                  at=[f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in frames])
        return JSONResponse({"error": "internal_error", "message": "the request failed unexpectedly; "
                             "nothing was stored (the transaction was rolled back)"}, status_code=500)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        """Readiness: store reachable, broker reachable, topics present, Kafka consumer started (503 naming the failing check otherwise)."""
        checks = await runtime.readiness()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/status", tags=["operations"])
    async def status() -> dict[str, Any]:
        """Event counts: stored and not yet published (producers), processed and dead-lettered (consumers)."""
        return await runtime.status()

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus metrics (text format): events consumed, stored and published per type, handler latency and errors, dead letters, outbox backlog, projection lag, HTTP requests."""
        await runtime.refresh_metrics()
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    for router in routers:
        app.include_router(router)
    return app


def tune_gc() -> None:
    """Garbage collection for a process that allocates and frees many short-lived objects per event (records,
    envelopes, pydantic models; none of them in reference cycles): the objects that exist after start-up
    (modules, the app) are moved out of the collector's sight (``gc.freeze``), and a young-generation collection
    runs every 50,000 net allocations instead of every 700 (older generations every 5 younger ones instead of 10,
    so garbage in cycles does not pile up). Measured on the projection (python -m bench): 26,200 -> 32,400
    events/s applied, resident memory unchanged within the run-to-run noise (+-10 MB)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 5, 5)


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run one service process; SIGTERM/SIGINT stop it gracefully (uvicorn runs the lifespan shutdown)."""
    import logging

    import uvicorn

    logging.captureWarnings(True)  # Python warnings become log lines too (one JSON object per line)
    tune_gc()
    # log_config=None: uvicorn's own lines go through our structlog renderer (JSON with the service name)
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_level="warning", log_config=None,
                timeout_graceful_shutdown=10, access_log=False)
