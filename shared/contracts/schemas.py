"""JSON Schemas of the published contract, generated from the pydantic models, and the compatibility rules.

Every current event and request type and every older version still readable (``legacy``) has one self-contained
JSON Schema (draft 2020-12). Events are described as they are written (serialisation: amounts are strings),
requests as they are accepted (validation). ``x-cloudevents`` names the CloudEvents ``type``, the producer's
``source``, the Kafka topic and the key. The committed copies live in ``contracts/v1/`` (``python -m
devstack.contracts`` writes them; a test fails when they are out of date or when a change would break a reader).
"""

from __future__ import annotations

from typing import Any

from .base import IntegrationEvent, IntegrationRequest, catalogue

CATALOGUE_VERSION = "v1"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _key_of(cls: type[Any]) -> str:
    fields = cls.model_fields
    if "subject" in fields:
        return "subject (the session id, else the cost centre)"
    if issubclass(cls, IntegrationRequest):
        return "any (the sender's choice; the id the request concerns is a good one)"
    if "session_id" in fields and fields["session_id"].is_required():
        return "session_id"
    if "session_id" in fields:
        return "session_id, else cost_centre"
    return "cost_centre"


def schema_of(cls: type[Any]) -> dict[str, Any]:
    """The JSON Schema of one current event or request type."""
    is_request = issubclass(cls, IntegrationRequest)
    body = cls.model_json_schema(mode="validation" if is_request else "serialization")
    return _wrap(body, cls.event_type, {
        "kind": "request" if is_request else "event",
        "type": cls.event_type,
        "source": "any URI reference naming the sender" if is_request else cls.source,
        "topic": cls.topic,
        "key": _key_of(cls),
        "status": "current",
    })


def _wrap(body: dict[str, Any], event_type: str, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": DIALECT,
        "$id": f"urn:ilt:contracts:{CATALOGUE_VERSION}:{event_type}",
        **body,
        "x-cloudevents": info,
    }


def published_schemas() -> dict[str, dict[str, Any]]:
    """{CloudEvents type: JSON Schema} of every type in the catalogue: current events and requests, and the older
    versions that stay readable."""
    out = {cls.event_type: schema_of(cls) for cls in catalogue.types()}
    for old in catalogue.superseded():
        if old.model is None:
            continue
        current = catalogue.resolve(catalogue.current_type(old.event_type) or "")
        info = {
            "kind": "event" if current is None or issubclass(current, IntegrationEvent) else "request",
            "type": old.event_type,
            "source": getattr(current, "source", ""),
            "topic": getattr(current, "topic", ""),
            "status": "superseded",
            "read_as": old.new_type,
        }
        out[old.event_type] = _wrap(old.model.model_json_schema(mode="validation"), old.event_type, info)
    return dict(sorted(out.items()))


# compatibility ---------------------------------------------------------------------------------------------------


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What in ``new`` would break a reader (or a sender) built against ``old``: a field removed or renamed, a type
    changed or narrowed, an optional field made required, a new required field, an enum value removed, a format
    or constant changed. Adding optional fields, widening a type or adding enum values is compatible."""
    problems: list[str] = []
    _compare(old, new, old.get("$defs", {}), new.get("$defs", {}), "", problems)
    return problems


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while "$ref" in schema and seen < 20:
        name = schema["$ref"].rsplit("/", 1)[-1]
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**defs.get(name, {}), **extra}
        seen += 1
    return schema


def _variants(schema: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _resolve(schema, defs)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            out = []
            for part in schema[key]:
                out += _variants(part, defs)
            return out
    return [schema]


def _kind(schema: dict[str, Any]) -> str:
    if "const" in schema:
        return "const"
    if "enum" in schema:
        return "enum"
    kind = schema.get("type")
    if isinstance(kind, list):
        return "|".join(sorted(kind))
    if kind is None and "properties" in schema:
        return "object"
    return str(kind or "any")


def _compare(old: dict[str, Any], new: dict[str, Any], old_defs: dict[str, Any], new_defs: dict[str, Any],
             where: str, problems: list[str]) -> None:
    old_variants, new_variants = _variants(old, old_defs), _variants(new, new_defs)
    old_values = _values(old_variants)
    new_values = _values(new_variants)
    if old_values is not None and new_values is not None:
        removed = old_values - new_values
        if removed:
            problems.append(f"{where or '(root)'}: enum value(s) removed: {', '.join(sorted(map(str, removed)))}")
    old_kinds = {_kind(v) for v in old_variants} - {"enum", "const"}
    new_kinds = {_kind(v) for v in new_variants} - {"enum", "const"}
    if "any" not in new_kinds:
        lost = old_kinds - new_kinds
        if old_values is not None and new_values is None:
            pass  # an enum widened to its base type: compatible
        elif lost:
            problems.append(f"{where or '(root)'}: type changed from {'|'.join(sorted(old_kinds))} "
                            f"to {'|'.join(sorted(new_kinds))}")
            return
    for old_v in old_variants:
        kind = _kind(old_v)
        match = next((v for v in new_variants if _kind(v) == kind), None)
        if match is None:
            continue
        if old_v.get("format") != match.get("format") and old_v.get("format") is not None:
            problems.append(f"{where or '(root)'}: format changed from {old_v.get('format')} to "
                            f"{match.get('format')}")
        if kind == "object":
            _compare_object(old_v, match, old_defs, new_defs, where, problems)
        elif kind == "array":
            _compare(old_v.get("items", {}), match.get("items", {}), old_defs, new_defs, f"{where}[]", problems)


def _values(variants: list[dict[str, Any]]) -> set[Any] | None:
    """The allowed values when the field is an enumeration (or constants), else None."""
    values: set[Any] = set()
    for v in variants:
        if "enum" in v:
            values |= {x for x in v["enum"] if not isinstance(x, dict | list)}
        elif "const" in v:
            values.add(v["const"])
        elif v.get("type") == "null":
            values.add(None)
        else:
            return None
    return values


def _compare_object(old: dict[str, Any], new: dict[str, Any], old_defs: dict[str, Any], new_defs: dict[str, Any],
                    where: str, problems: list[str]) -> None:
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_req, new_req = set(old.get("required", [])), set(new.get("required", []))
    prefix = f"{where}." if where else ""
    for name, schema in old_props.items():
        if name not in new_props:
            problems.append(f"{prefix}{name}: field removed (or renamed)")
            continue
        _compare(schema, new_props[name], old_defs, new_defs, f"{prefix}{name}", problems)
    for name in sorted(new_req - old_req):
        if name in old_props:
            problems.append(f"{prefix}{name}: optional field made required")
        else:
            problems.append(f"{prefix}{name}: new required field")
