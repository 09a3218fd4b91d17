"""Building blocks of the public event contract: base class, money, time and the type registry.

Every event that leaves a service is an ``IntegrationEvent`` subclass with a stable wire type name
(``ilt.<producer>.<event>.v<N>``), the topic it travels on, and the aggregate id used as Kafka key and
CloudEvents subject. Python import paths never reach the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

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


def _not_a_float(value: Any) -> Any:
    """A JSON number with a fraction is a float, and a float cannot hold every amount exactly: refused, as the
    schema says (whole numbers are exact and pass)."""
    if isinstance(value, float | bool):
        raise ValueError("an amount is a decimal string such as \"100.50\", never a JSON float")
    return value


Amount = Annotated[
    Decimal,
    BeforeValidator(_not_a_float),
    Field(max_digits=18, decimal_places=2, allow_inf_nan=False),
    PlainSerializer(lambda d: str(d), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d{1,16}(\.\d{1,2})?$",
                    "description": "Decimal amount as a string (never a float), at most two decimal places.",
                    "examples": ["1250.00"]}),
]
"""A decimal amount with at most two decimal places, serialised as a JSON string (never a float)."""


# ISO 4217 active currency codes (list one, 2026), plus the precious metals and testing codes are left out on purpose
ISO_4217 = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF
CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL
HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL
MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON
RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS
UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL
""".split())


def is_iso_currency(code: str) -> bool:
    """Commands check currencies against ISO 4217; stored events are read as they were written."""
    return code in ISO_4217


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


class CloudEventData(BaseModel):
    """What travels as the data of a CloudEvent: an event we publish or a request we take.

    ``event_type`` is the CloudEvents ``type`` (``ilt.<service>.<name>.v<N>``), ``topic`` the Kafka topic it travels
    on, ``source`` the CloudEvents ``source`` of its producer, and ``aggregate_id()`` the Kafka key and ``subject``.
    """

    event_type: ClassVar[str]
    topic: ClassVar[str]
    source: ClassVar[str]

    def aggregate_id(self) -> str:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


class IntegrationEvent(CloudEventData):
    """Base of every published event.

    Readers ignore fields they do not know (a producer may add optional fields within one version);
    removing or changing a field needs a new version of the type.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    occurred_at: Timestamp = Field(description="When the fact happened in the business (may be back-dated by an import).")


class IntegrationRequest(CloudEventData):
    """Base of every request another system may send us on a service's inbound topic (``ilt.<service>.requests``).

    Strict: a field the contract does not know makes the request malformed (dead-letter topic), as an unknown
    field in an HTTP body is refused. ``source`` is the sender's own CloudEvents source (any URI reference)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: ClassVar[str] = "/ilt/clients"


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Superseded:
    """An older version of an event type that stays readable: ``upcast`` turns its data into ``new_type``'s."""

    event_type: str
    new_type: str
    upcast: Upcaster
    model: type[BaseModel] | None = None  # the old version's shape, for its published JSON Schema


class EventCatalogue:
    """Maps wire type names to event and request classes, for decoding what arrives from Kafka or the store.

    Older versions of a type stay readable through upcasters (``supersede``): their data is rewritten, one version
    step at a time, into the current model."""

    def __init__(self) -> None:
        self._by_type: dict[str, type[CloudEventData]] = {}
        self._superseded: dict[str, Superseded] = {}

    def register(self, cls: type[CloudEventData]) -> type[CloudEventData]:
        existing = self._by_type.get(cls.event_type)
        if existing is not None and existing is not cls:
            raise ValueError(f"event type {cls.event_type} registered twice")
        self._by_type[cls.event_type] = cls
        return cls

    def supersede(self, old_type: str, new_type: str, upcast: Upcaster, model: type[BaseModel] | None = None) -> None:
        if old_type in self._by_type:
            raise ValueError(f"{old_type} is a current type: it cannot be superseded")
        self._superseded[old_type] = Superseded(old_type, new_type, upcast, model)

    def resolve(self, event_type: str) -> type[Any] | None:
        return self._by_type.get(event_type)

    def current_type(self, event_type: str) -> str | None:
        """The current type an (old or current) type is read as; None if it is not readable."""
        seen = set()
        while event_type not in self._by_type:
            step = self._superseded.get(event_type)
            if step is None or event_type in seen:
                return None
            seen.add(event_type)
            event_type = step.new_type
        return event_type

    def load(self, event_type: str, data: bytes | str) -> Any:
        """The data of a stored or received event as its current model, upcasting an older version.

        Raises ``LookupError`` for a type that is not readable, ``ValueError`` (pydantic's ``ValidationError``)
        for data that does not fit."""
        cls = self._by_type.get(event_type)
        if cls is not None:
            return cls.model_validate_json(data)
        if self.current_type(event_type) is None:
            raise LookupError(event_type)
        payload = orjson.loads(data)
        if not isinstance(payload, dict):
            raise ValueError(f"the data of {event_type} is not a JSON object")
        while event_type not in self._by_type:
            step = self._superseded[event_type]
            if step.model is not None:  # the old data must be what the old version said
                step.model.model_validate(payload)
            payload, event_type = step.upcast(dict(payload)), step.new_type
        return self._by_type[event_type].model_validate(payload)

    def types(self) -> list[type[Any]]:
        """Every current type: events and requests."""
        return list(self._by_type.values())

    def events(self) -> list[type[IntegrationEvent]]:
        return [c for c in self._by_type.values() if issubclass(c, IntegrationEvent)]

    def requests(self) -> list[type[IntegrationRequest]]:
        return [c for c in self._by_type.values() if issubclass(c, IntegrationRequest)]

    def superseded(self) -> list[Superseded]:
        return list(self._superseded.values())

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._by_type


catalogue = EventCatalogue()


def published(cls: type[Any]) -> type[Any]:
    """Class decorator: add an event (or request) class to the public catalogue."""
    return catalogue.register(cls)


def json_ready(value: Any) -> Any:  # small helper for logs and tests
    if isinstance(value, datetime):
        return value.isoformat()
    return value
