"""The AsyncAPI 3.0 document of a service: what it receives and sends on Kafka, message by message.

FastStream generates the document (info, servers, channels, operations) from a documentation broker that declares
the service's subscriptions and publications; the messages are then filled in from the published contract: one
message per CloudEvents type, with its binary-mode headers (``ce_type`` fixed to the type) and its payload schema
(the JSON Schema of ``contracts/v1``, its definitions moved to ``components.schemas``). Each service serves its
document (``GET /asyncapi.yaml``, ``GET /asyncapi.json``); ``python -m devstack.asyncapi`` exports them to
``asyncapi/<service>.yaml`` and a test validates the exported files with the official parser.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from shared.contracts.base import IntegrationRequest, catalogue
from shared.contracts.schemas import published_schemas
from shared.contracts.topics import EVENT_TOPICS, REQUEST_TOPICS, dead_letter_topic

SERVER = "localhost:9092"  # a placeholder: the document describes the contract, not one deployment
VERSION = "1.0.0"


def document(service: str, title: str, description: str, consumes: Iterable[type], publishes: str | None,
             ) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document (a JSON-ready dict) of one service.

    ``consumes``: the event and request classes its consumer handles (grouped by topic); ``publishes``: its
    outbound topic (every catalogue event on that topic), or None."""
    by_topic: dict[str, list[type]] = {}
    for cls in sorted(consumes, key=lambda c: c.event_type):
        by_topic.setdefault(cls.topic, []).append(cls)
    sent = sorted((c for c in catalogue.events() if c.topic == publishes), key=lambda c: c.event_type)

    broker = KafkaBroker(SERVER, description="Apache Kafka (any Kafka-compatible broker); CloudEvents 1.0 in Kafka "
                         "binary mode on every topic, structured mode also accepted on the inbound request topics.")
    channels: dict[str, tuple[str, list[type]]] = {}
    for topic, classes in by_topic.items():
        name = _channel(topic)
        what = (f"Requests other systems send to the {service} service" if topic in REQUEST_TOPICS
                else f"Events the {service} service applies")
        subscriber = broker.subscriber(topic, group_id=service, title=name,
                                       description=f"{what}, read from `{topic}` (consumer group `{service}`).")
        subscriber(_noop)
        channels[name] = (topic, classes)
    if publishes:
        name = _channel(publishes)
        broker.publisher(publishes, title=name, description=f"Events the {service} service publishes on "
                         f"`{publishes}`, including the outcome of every request it took (key: the aggregate id).")
        channels[name] = (publishes, sent)
    if by_topic:
        topic = dead_letter_topic(service)
        name = _channel(topic)
        broker.publisher(topic, title=name, description=f"Records the {service} service could not take (malformed, "
                         "unknown type, or a handler that kept failing): the original record with the reason in "
                         "`dlq_*` headers.")
        channels[name] = (topic, [])

    spec = AsyncAPI(broker, title=title, version=VERSION, description=description, schema_version="3.0.0")
    doc = spec.to_specification().to_jsonable()
    return _fill_messages(doc, channels)


async def _noop(body: bytes) -> None:  # pragma: no cover - a documentation subscriber never runs
    return None


def _channel(topic: str) -> str:
    return topic.replace(".", "-")


def _message_name(event_type: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", event_type)


def _fill_messages(doc: dict[str, Any], channels: dict[str, tuple[str, list[type]]]) -> dict[str, Any]:
    schemas = published_schemas()
    components: dict[str, Any] = {"messages": {}, "schemas": {}}
    for name, (topic, classes) in channels.items():
        channel = doc["channels"][name]
        channel["address"] = topic
        messages = {}
        if not classes:  # the dead-letter topic
            messages["DeadLetter"] = {"$ref": "#/components/messages/DeadLetter"}
            components["messages"]["DeadLetter"] = _dead_letter_message()
        for cls in classes:
            key = _message_name(cls.event_type)
            messages[key] = {"$ref": f"#/components/messages/{key}"}
            if key not in components["messages"]:
                payload = _hoist(copy.deepcopy(schemas[cls.event_type]), components["schemas"])
                components["schemas"][cls.__name__] = payload
                components["messages"][key] = _message(cls, f"#/components/schemas/{cls.__name__}")
        channel["messages"] = messages
    for operation in doc.get("operations", {}).values():
        channel_name = operation["channel"]["$ref"].rsplit("/", 1)[-1]
        operation["messages"] = [{"$ref": f"#/channels/{channel_name}/messages/{m}"}
                                 for m in doc["channels"][channel_name]["messages"]]
        verb = "Receive from" if operation.get("action") == "receive" else "Send to"
        operation["summary"] = f"{verb} {doc['channels'][channel_name]['address']}"
    # in a stable order (FastStream's own order of publishers varies between builds)
    doc["channels"] = {name: doc["channels"][name] for name in channels}
    doc["operations"] = dict(sorted(doc.get("operations", {}).items(),
                                    key=lambda item: list(channels).index(item[1]["channel"]["$ref"].rsplit("/", 1)[-1])))
    doc["components"] = {**{k: v for k, v in doc.get("components", {}).items() if k not in ("messages", "schemas")},
                         "messages": dict(sorted(components["messages"].items())),
                         "schemas": dict(sorted(components["schemas"].items()))}
    doc["defaultContentType"] = "application/json"
    return doc


def _hoist(schema: dict[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    """Move ``$defs`` into ``components.schemas`` and point the references there (JSON Schema draft 2020-12
    keywords AsyncAPI's draft-07 schema objects do not have are dropped: ``$schema``, ``$id``)."""
    defs = schema.pop("$defs", {})
    for key in ("$schema", "$id"):
        schema.pop(key, None)
    info = schema.pop("x-cloudevents", None)
    if info:
        schema["x-cloudevents"] = info
    for name, definition in defs.items():
        definition = _rewrite_refs(definition)
        existing = shared.get(name)
        if existing is not None and existing != definition:
            raise ValueError(f"two different schemas named {name} in one AsyncAPI document")
        shared[name] = definition
    return _rewrite_refs(schema)


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" and isinstance(v, str)
                    else _rewrite_refs(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def _ce_headers(event_type: str | None, source: str | None) -> dict[str, Any]:
    text = {"type": "string"}
    properties: dict[str, Any] = {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {**text, "description": "Unique id of this event (a UUID); a redelivery keeps it."},
        "ce_source": {**text, "description": "Who sent it.", **({"const": source} if source else {})},
        "ce_type": {**text, **({"const": event_type} if event_type else {})},
        "ce_time": {**text, "format": "date-time", "description": "When it was recorded (RFC 3339)."},
        "ce_subject": {**text, "description": "The aggregate id (also the Kafka key)."},
        "ce_correlationid": {**text, "description": "The chain this event belongs to (kept from its cause)."},
        "ce_causationid": {**text, "description": "The id of the event or request that caused this one."},
        "content-type": {**text, "description": "application/json in binary mode; "
                         "application/cloudevents+json in structured mode (requests only)."},
    }
    return {"type": "object", "properties": properties,
            "required": ["ce_specversion", "ce_id", "ce_source", "ce_type"]}


def _message(cls: type, payload_ref: str) -> dict[str, Any]:
    is_request = issubclass(cls, IntegrationRequest)
    doc = " ".join((cls.__doc__ or "").strip().split())
    summary = doc.split(". ")[0].rstrip(".") if doc else cls.__name__
    return {
        "name": cls.event_type,
        "title": cls.__name__,
        "summary": summary[:200],
        **({"description": doc} if doc else {}),
        "contentType": "application/json",
        "headers": _ce_headers(cls.event_type, None if is_request else cls.source),
        "payload": {"$ref": payload_ref},
        "correlationId": {"description": "Follow a request: every event it caused carries its id as causation id.",
                          "location": "$message.header#/ce_causationid"},
        "bindings": {"kafka": {"key": {"type": "string", "description": "The aggregate id (session id, else cost "
                                       "centre)" if not is_request else "Any; the id the request concerns keeps "
                                       "its requests in order."}, "bindingVersion": "0.5.0"}},
    }


def _dead_letter_message() -> dict[str, Any]:
    headers = _ce_headers(None, None)
    headers["properties"].update({
        "dlq_reason": {"type": "string", "description": "invalid_payload, unknown_type, missing_type, missing_id, "
                       "missing_source, unsupported_specversion, unsupported_content_type, invalid_structured_event, "
                       "invalid_time, empty_value or handler_failed."},
        "dlq_error": {"type": "string", "description": "What was wrong (field names and messages, never values)."},
        "dlq_consumer": {"type": "string"},
        "dlq_original_topic": {"type": "string"},
        "dlq_original_partition": {"type": "string"},
        "dlq_original_offset": {"type": "string"},
        "dlq_failed_at": {"type": "string", "format": "date-time"},
    })
    headers["required"] = ["dlq_reason", "dlq_original_topic"]
    return {"name": "dead-letter", "title": "DeadLetter", "summary": "A record that could not be taken, as it came",
            "headers": headers, "payload": {"description": "The original record's value, unchanged."}}


def for_runtime(runtime: Any, title: str, description: str) -> dict[str, Any]:
    consumes = list(runtime.consumer.handlers) if runtime.consumer is not None else []
    publishes = f"ilt.{runtime.name}.events" if runtime.relay is not None else None
    assert publishes is None or publishes in EVENT_TOPICS
    return document(runtime.name, title, description, consumes, publishes)


def to_yaml(doc: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)


def for_app(app: Any) -> dict[str, Any]:
    """The document of a service's app (built by its bootstrap), kept on the app after the first call."""
    doc = getattr(app.state, "asyncapi", None)
    if doc is None:
        doc = for_runtime(app.state.runtime, app.title, app.description)
        app.state.asyncapi = doc
    return doc


def router() -> APIRouter:
    """``GET /asyncapi.yaml`` and ``GET /asyncapi.json``: the service's AsyncAPI document."""
    api = APIRouter(tags=["operations"])

    @api.get("/asyncapi.yaml", response_class=Response)
    async def asyncapi_yaml(request: Request) -> Response:
        """AsyncAPI 3.0 document of the service's Kafka interface (YAML): topics, messages, CloudEvents headers, payload schemas."""
        return Response(to_yaml(for_app(request.app)), media_type="application/yaml")

    @api.get("/asyncapi.json")
    async def asyncapi_json(request: Request) -> JSONResponse:
        """AsyncAPI 3.0 document of the service's Kafka interface (JSON)."""
        return JSONResponse(for_app(request.app))

    return api
