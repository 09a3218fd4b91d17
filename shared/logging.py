"""structlog set-up: JSON lines in production, readable lines in a terminal. Every line names the service.

Lines from libraries that use the standard ``logging`` module (uvicorn, aiokafka, FastStream) go through the same
renderer, so a JSON log stays one JSON object per line. Fields every line has: ``timestamp``, ``level``, ``event``
(the message) and ``service``; where there is one: ``event_id``, ``event_type``, ``correlation_id``,
``causation_id`` (bound while a consumed event is handled, while a command runs, and on relay lines).
Never log request bodies or event payloads: they may hold learner data.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog

from shared.messaging.envelope import Envelope, header_map

_HANDLER_MARK = "_ilt_handler"


def configure_logging(service: str, fmt: str = "json", level: str = "INFO") -> structlog.stdlib.BoundLogger:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )

    def add_service(_: Any, __: str, event_dict: structlog.typing.EventDict) -> structlog.typing.EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    shared_processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_event_fields,
        add_service,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared_processors, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # standard-library loggers (uvicorn, aiokafka, faststream): same fields, same renderer, warnings and up
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared_processors, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    ))
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    structlog.contextvars.bind_contextvars(service=service)
    return structlog.get_logger()


def get_logger() -> structlog.stdlib.BoundLogger:
    return structlog.get_logger()


def event_fields(envelope: Envelope) -> dict[str, str]:
    """The ids that make a log line about one event traceable (bind them, never the payload)."""
    fields = {"event_id": envelope.id, "event_type": envelope.type, "correlation_id": envelope.correlation_id,
              "causation_id": envelope.causation_id}
    return {k: v for k, v in fields.items() if v}


HANDLING: ContextVar[Envelope | None] = ContextVar("ilt_handling", default=None)  # the event being handled


@contextmanager
def handling(envelope: Envelope) -> Iterator[None]:
    """While an event is handled, every log line carries its ids (``event_fields``), added when a line is
    written: one context-variable set per event instead of binding four variables for each."""
    token = HANDLING.set(envelope)
    try:
        yield
    finally:
        HANDLING.reset(token)


def add_event_fields(_: Any, __: str, event_dict: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """structlog processor: the ids of the event being handled, unless the line names them itself."""
    envelope = HANDLING.get()
    if envelope is not None:
        for key, value in event_fields(envelope).items():
            event_dict.setdefault(key, value)
    return event_dict


def header_fields(headers: Any) -> dict[str, str]:
    """The same ids read from a Kafka record's CloudEvents headers (for records that may not decode)."""
    attrs = header_map(headers)
    fields = {"event_id": attrs.get("ce_id"), "event_type": attrs.get("ce_type"),
              "correlation_id": attrs.get("ce_correlationid"), "causation_id": attrs.get("ce_causationid")}
    return {k: v[:200] for k, v in fields.items() if v}
