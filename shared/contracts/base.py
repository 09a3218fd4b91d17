"""Building blocks of the public event contract: base class, money, time and the type registry.

Every event that leaves a service is an ``IntegrationEvent`` subclass with a stable wire type name
(``ilt.<producer>.<event>.v<N>``), the topic it travels on, and the aggregate id used as Kafka key and
CloudEvents subject. Python import paths never reach the wire.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

CURRENCY_PATTERN = r"^[A-Z]{3}$"


def _check_time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {name!r}") from exc
    return name


TimeZoneName = Annotated[str, AfterValidator(_check_time_zone), Field(examples=["Europe/Berlin"])]
"""An IANA time zone name such as ``Europe/Berlin``."""

Timestamp = AwareDatetime
"""A timezone-aware point in time (ISO 8601 with offset on the wire)."""

Amount = Annotated[
    Decimal,
    Field(max_digits=18, decimal_places=2, allow_inf_nan=False),
    PlainSerializer(lambda d: str(d), return_type=str, when_used="json"),
]
"""A decimal amount with at most two decimal places, serialised as a JSON string (never a float)."""


class Money(BaseModel):
    """An amount in one ISO 4217 currency. Negative amounts are reversals."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: Amount
    currency: str = Field(pattern=CURRENCY_PATTERN, examples=["EUR"])

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def __neg__(self) -> Money:
        return Money(amount=-self.amount, currency=self.currency)

    def times(self, factor: int | Decimal) -> Money:
        return Money(amount=(self.amount * factor).quantize(Decimal("0.01")), currency=self.currency)


class IntegrationEvent(BaseModel):
    """Base of every published event.

    Readers ignore fields they do not know (a producer may add optional fields within one version);
    removing or changing a field needs a new version of the type.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]
    topic: ClassVar[str]
    source: ClassVar[str]

    occurred_at: Timestamp = Field(description="When the fact happened in the business (may be back-dated by an import).")

    def aggregate_id(self) -> str:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


class EventCatalogue:
    """Maps wire type names to event classes, for decoding what arrives from Kafka."""

    def __init__(self) -> None:
        self._by_type: dict[str, type[IntegrationEvent]] = {}

    def register(self, cls: type[IntegrationEvent]) -> type[IntegrationEvent]:
        existing = self._by_type.get(cls.event_type)
        if existing is not None and existing is not cls:
            raise ValueError(f"event type {cls.event_type} registered twice")
        self._by_type[cls.event_type] = cls
        return cls

    def resolve(self, event_type: str) -> type[IntegrationEvent] | None:
        return self._by_type.get(event_type)

    def types(self) -> list[type[IntegrationEvent]]:
        return list(self._by_type.values())

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._by_type


catalogue = EventCatalogue()


def published(cls: type[IntegrationEvent]) -> type[IntegrationEvent]:
    """Class decorator: add an event class to the public catalogue."""
    return catalogue.register(cls)


def json_ready(value: Any) -> Any:  # small helper for logs and tests
    if isinstance(value, datetime):
        return value.isoformat()
    return value
