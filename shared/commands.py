"""Command plumbing shared by the command-taking services: business time of a command, concurrency retries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pydantic import AwareDatetime, BaseModel, Field

from shared.contracts.base import IntegrationEvent
from shared.errors import Conflict, Invalid
from shared.messaging.envelope import Envelope
from shared.store.port import ConcurrencyError

T = TypeVar("T")
CLOCK_TOLERANCE = timedelta(minutes=5)


class CommandTime(BaseModel):
    """Mixed into command bodies. An import states when a command happened; everyone else leaves it out."""

    as_of: AwareDatetime | None = Field(
        default=None,
        description="When this command happened in the business. Rules that depend on 'now' use it. "
        "A time in the past is only accepted with backdated=true (historical imports).",
    )
    backdated: bool = Field(default=False, description="Declares a historical import that back-dates as_of.")

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
