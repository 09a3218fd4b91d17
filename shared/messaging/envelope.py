"""CloudEvents 1.0 envelope and its Kafka binary-mode binding.

On the wire the Kafka value is the JSON event data; the attributes travel as headers ``ce_specversion``,
``ce_id``, ``ce_source``, ``ce_type``, ``ce_time``, ``ce_subject``, ``content-type``, plus the extension
attributes ``ce_correlationid`` and ``ce_causationid`` that let a chain of events be traced.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from shared.contracts.base import EventCatalogue, IntegrationEvent, catalogue

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
MAX_HEADER_VALUE = 1024


class UndecodableEvent(Exception):
    """A record that cannot become an event: the reason goes to the dead-letter headers."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Envelope:
    """One event with its CloudEvents attributes."""

    data: IntegrationEvent
    id: str = field(default_factory=new_id)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    correlation_id: str | None = None
    causation_id: str | None = None

    def __post_init__(self) -> None:
        if self.correlation_id is None:
            object.__setattr__(self, "correlation_id", self.id)

    @property
    def type(self) -> str:
        return self.data.event_type

    @property
    def source(self) -> str:
        return self.data.source

    @property
    def subject(self) -> str:
        return self.data.aggregate_id()

    @property
    def topic(self) -> str:
        return self.data.topic

    @property
    def key(self) -> str:
        return self.data.aggregate_id()

    def caused(self, data: IntegrationEvent) -> Envelope:
        """A new event caused by this one: same correlation, causation = this event's id."""
        return Envelope(data=data, correlation_id=self.correlation_id, causation_id=self.id)

    def with_time(self, time: datetime) -> Envelope:
        return replace(self, time=time)

    def value(self) -> bytes:
        return self.data.model_dump_json().encode()

    def headers(self) -> list[tuple[str, bytes]]:
        return encode_headers(
            id=self.id,
            source=self.source,
            type=self.type,
            time=self.time,
            subject=self.subject,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
        )


def encode_headers(
    *,
    id: str,
    source: str,
    type: str,
    time: datetime,
    subject: str,
    correlation_id: str | None,
    causation_id: str | None,
) -> list[tuple[str, bytes]]:
    headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", type.encode()),
        ("ce_time", time.isoformat().encode()),
        ("ce_subject", subject.encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    if correlation_id:
        headers.append(("ce_correlationid", correlation_id.encode()))
    if causation_id:
        headers.append(("ce_causationid", causation_id.encode()))
    return headers


def header_map(headers: Any) -> dict[str, str]:
    """Kafka headers (a sequence of (name, bytes)) as a dict of str; undecodable values are replaced."""
    out: dict[str, str] = {}
    for name, raw in headers or ():
        if raw is None:
            out[name] = ""
        elif isinstance(raw, bytes | bytearray):
            out[name] = bytes(raw).decode("utf-8", errors="replace")
        else:
            out[name] = str(raw)
    return out


def decode(value: bytes | None, headers: Any, registry: EventCatalogue = catalogue) -> Envelope:
    """Turn a Kafka record in binary mode into an ``Envelope``, or raise ``UndecodableEvent``."""
    attrs = header_map(headers)
    if attrs.get("ce_specversion") != SPEC_VERSION:
        raise UndecodableEvent("unsupported_specversion", repr(attrs.get("ce_specversion")))
    event_type = attrs.get("ce_type")
    if not event_type:
        raise UndecodableEvent("missing_type")
    event_id = attrs.get("ce_id")
    if not event_id:
        raise UndecodableEvent("missing_id")
    cls = registry.resolve(event_type)
    if cls is None:
        raise UndecodableEvent("unknown_type", event_type[:200])
    if value is None:
        raise UndecodableEvent("empty_value")
    try:
        data = cls.model_validate_json(value)
    except ValidationError as exc:
        raise UndecodableEvent("invalid_payload", summarize_validation(exc)) from exc
    try:
        time = datetime.fromisoformat(attrs["ce_time"]) if attrs.get("ce_time") else datetime.now(UTC)
    except ValueError as exc:
        raise UndecodableEvent("invalid_time", attrs["ce_time"][:100]) from exc
    return Envelope(
        data=data,
        id=event_id,
        time=time,
        correlation_id=attrs.get("ce_correlationid") or event_id,
        causation_id=attrs.get("ce_causationid") or None,
    )


def summarize_validation(exc: ValidationError) -> str:
    """Field locations and messages only: never the input values (they may hold personal data)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:10]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"{loc}: {err.get('msg', '')}")
    return "; ".join(parts)[:MAX_HEADER_VALUE]


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)
