"""The process around a service: store, outbox relay, Kafka consumer and HTTP API, started and stopped together.

Every service's ``bootstrap.py`` builds one ``ServiceRuntime`` and hands it its HTTP routers and event handlers;
so all four services start, stop, report health and status the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker

from shared.contracts.topics import dead_letter_topic
from shared.errors import CommandRejected
from shared.logging import configure_logging
from shared.messaging.consumer import DEAD_LETTERS, EventConsumer, Handler
from shared.messaging.kafka import Producer, missing_topics
from shared.messaging.relay import OutboxRelay
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
        self.store = store or open_store(settings.store_url)
        security = settings.kafka_security()
        self.producer = Producer(settings.kafka_bootstrap_servers, security)
        self.relay = (
            OutboxRelay(self.store, self.producer, batch_size=settings.outbox_batch_size) if publishes else None
        )
        self.subscribes_to = subscribes_to
        self.broker: KafkaBroker | None = None
        self.consumer: EventConsumer | None = None
        self.on_applied: list[Callable[[Any], None]] = []
        if subscribes_to:
            # logger=None: FastStream would log every message at INFO; our consumer logs what matters
            self.broker = KafkaBroker(settings.kafka_bootstrap_servers, logger=None, **_broker_security(security))
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
            self.consumer.subscribe(self.broker, *subscribes_to)

    def _applied(self, envelope: Any) -> None:
        for callback in self.on_applied:
            callback(envelope)

    async def start(self) -> None:
        await self.store.open()
        if self.relay is not None:
            self.store.on_commit.append(self.relay.wake)
            self.relay.start()
        if self.broker is not None:
            await _retrying(self.broker.start, "kafka consumer")
        log.info("service started", http=f"{self.settings.http_host}:{self.settings.http_port}",
                 kafka=self.settings.kafka_bootstrap_servers, store=redact(self.settings.store_url))

    async def stop(self) -> None:
        if self.broker is not None:
            await self.broker.stop()  # stop taking events; what is stored is committed, the rest comes back
        if self.relay is not None:
            await self.relay.stop()
        await self.producer.stop()
        await self.store.close()
        log.info("service stopped")

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


def redact(url: str) -> str:
    """A URL without its password, for logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _broker_security(security: dict[str, Any]) -> dict[str, Any]:
    # FastStream takes the same aiokafka connection arguments
    return {k: v for k, v in security.items() if k != "security_protocol" or v != "PLAINTEXT"}


async def _retrying(start: Callable[[], Any], what: str, attempts: int = 30) -> None:
    delay = 0.2
    for n in range(attempts):
        try:
            await start()
            return
        except Exception as exc:  # noqa: BLE001
            if n == attempts - 1:
                raise
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

    @app.exception_handler(CommandRejected)
    async def rejected(_: Request, exc: CommandRejected) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body", "reason": e.get("msg", "")}
            for e in exc.errors()
        ]
        return JSONResponse({"error": "invalid", "message": "the request is not valid", "detail": detail},
                            status_code=422)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        """Readiness: store reachable, broker reachable, topics present (503 with the failing check otherwise)."""
        checks = await runtime.readiness()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/status", tags=["operations"])
    async def status() -> dict[str, Any]:
        """Event counts: stored and not yet published (producers), processed and dead-lettered (consumers)."""
        return await runtime.status()

    for router in routers:
        app.include_router(router)
    return app


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run one service process; SIGTERM/SIGINT stop it gracefully (uvicorn runs the lifespan shutdown)."""
    import uvicorn

    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_level="warning",
                timeout_graceful_shutdown=10, access_log=False)
