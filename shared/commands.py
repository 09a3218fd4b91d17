"""Command plumbing shared by the command-taking services: business time of a command, concurrency retries, and
requests taken from Kafka (run through the same command handlers as HTTP, each ending with an outcome event)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import structlog
from pydantic import ValidationError

from shared.contracts.base import IntegrationEvent, IntegrationRequest
from shared.contracts.requests import OUTCOMES, BusinessTime
from shared.errors import CommandRejected, Conflict, Invalid
from shared.messaging.envelope import Envelope
from shared.store.port import ConcurrencyError, UnitOfWork
from shared.store.staged import StagedUnitOfWork

log = structlog.get_logger()

T = TypeVar("T")
CLOCK_TOLERANCE = timedelta(minutes=5)


class CommandTime(BusinessTime):
    """Mixed into command bodies. An import states when a command happened; everyone else leaves it out."""

    def effective_time(self, now: datetime | None = None) -> tuple[datetime, bool]:
        """(the time rules are judged against, whether it is back-dated)."""
        now = now or datetime.now(UTC)
        if self.as_of is None:
            if self.backdated:
                raise Invalid("as_of", "backdated=true needs as_of, the time the command happened")
            return now, False
        if self.as_of > now + CLOCK_TOLERANCE:
            raise Invalid("as_of", "lies in the future")
        if self.as_of < now - CLOCK_TOLERANCE and not self.backdated:
            raise Invalid("as_of", "lies in the past: a historical import must say backdated=true")
        return self.as_of, self.as_of < now - CLOCK_TOLERANCE


async def retry_on_concurrency(attempt: Callable[[], Awaitable[T]], attempts: int = 5) -> T:
    """Run a command again when another writer got to the stream first; 409 if it keeps losing."""
    for n in range(attempts):
        try:
            return await attempt()
        except ConcurrencyError as exc:
            if n == attempts - 1:
                raise Conflict(
                    "the record was changed by another request at the same time; try again",
                    code="concurrent_modification",
                    details={"stream": exc.stream_id},
                    retry_after=1,
                ) from exc
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Trace:
    """Correlation of a command: what started the chain, and what directly caused this command."""

    correlation_id: str | None = None
    causation_id: str | None = None

    def envelope(self, data: IntegrationEvent) -> Envelope:
        return Envelope(data=data, correlation_id=self.correlation_id, causation_id=self.causation_id)

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Trace:
        """HTTP: ``X-Correlation-Id`` joins an existing chain, ``X-Request-Id`` names the cause."""
        return cls(correlation_id=headers.get("x-correlation-id") or None,
                   causation_id=headers.get("x-request-id") or None)


RequestRunner = Callable[[UnitOfWork, Any, Trace], Awaitable[tuple[dict[str, Any], bool]]]
"""Runs one request's command on a unit of work: returns (what HTTP would answer, whether anything changed)."""
RequestHandler = Callable[[UnitOfWork, Envelope], Awaitable[None]]


def request_handlers(runners: Mapping[type[IntegrationRequest], RequestRunner]) -> dict[type, RequestHandler]:
    """Consumer handlers for a service's inbound requests (see ``shared.contracts.requests``)."""
    return {cls: take_request(run) for cls, run in runners.items()}


def take_request(run: RequestRunner) -> RequestHandler:
    """A consumer handler that runs a request's command in the consumer's transaction (whose inbox claim of the
    request makes a redelivery a no-op) and stores its outcome event with it.

    The command's events are caused by the request (causation id = the request's id, correlation id kept). A
    refusal (``CommandRejected``, or a rule the command model states) becomes a ``request-rejected`` event and
    nothing else: the command's writes are staged and dropped. Any other error propagates (retries, then the
    dead-letter topic)."""

    async def handle(uow: UnitOfWork, envelope: Envelope) -> None:
        request = envelope.data
        accepted, rejected = OUTCOMES[request.topic]
        trace = Trace(correlation_id=envelope.correlation_id, causation_id=envelope.id)
        staged = StagedUnitOfWork(uow)
        about = {"request_id": envelope.id, "request_type": envelope.type, "request_source": envelope.source,
                 "occurred_at": datetime.now(UTC)}
        outcome: IntegrationEvent
        try:
            result, changed = await run(staged, request, trace)
        except (CommandRejected, ValidationError) as exc:
            staged.discard()
            if isinstance(exc, ValidationError):
                exc = _invalid(exc)
            body = exc.body()
            details = {k: v for k, v in body.items() if k not in ("error", "message", "retryable")}
            outcome = rejected(**about, subject=request.aggregate_id(), error=exc.code, message=exc.message,
                               retryable=exc.retry_after is not None, details=details)
            log.info("request rejected", request_type=envelope.type, error=exc.code)
        else:
            await staged.commit()
            subject = result.get("session_id") or request.aggregate_id()
            outcome = accepted(**about, subject=str(subject), changed=changed, result=result)
            log.info("request accepted", request_type=envelope.type, changed=changed)
        await uow.append(f"request-{envelope.id}", 0, [trace.envelope(outcome)])

    return handle


def _invalid(exc: ValidationError) -> CommandRejected:
    detail = [{"field": ".".join(str(p) for p in e.get("loc", ())) or "body", "reason": e.get("msg", "")}
              for e in exc.errors(include_url=False, include_input=False)]
    rejected = Invalid(detail[0]["field"] if detail else "body", detail[0]["reason"] if detail else "invalid")
    rejected.details = {"detail": detail}
    return rejected
