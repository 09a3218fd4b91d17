"""Generates the reference parts of README.md from the code, so that they stay true.

``python -m devstack.docs`` rewrites the sections between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``;
a test fails when the committed README differs from what this would write.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shared.contracts import catalogue
from shared.settings import ServiceSettings

README = Path(__file__).resolve().parent.parent / "README.md"
SERVICE_NAMES = ("scheduling", "enrollment", "finance", "reporting")


def _apps() -> dict[str, Any]:
    import importlib

    apps = {}
    for name in SERVICE_NAMES:
        bootstrap = importlib.import_module(f"services.{name}.bootstrap")
        apps[name] = bootstrap.build()
    return apps


def _type_of(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].split("/")[-1]
    if "anyOf" in schema:
        parts = [_type_of(s, defs) for s in schema["anyOf"]]
        return " \\| ".join(p for p in parts)
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list[{_type_of(schema.get('items', {}), defs)}]"
    if kind == "string" and schema.get("format") == "date-time":
        return "datetime"
    if kind == "null":
        return "null"
    return str(kind)


def _fields(model: type[BaseModel]) -> str:
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        mark = "" if name in required else "?"
        out.append(f"`{name}{mark}`: {_type_of(prop, defs)}")
    return "<br>".join(out)


def event_catalogue() -> str:
    apps = _apps()
    consumers: dict[type, list[str]] = {}
    for name, app in apps.items():
        consumer = app.state.runtime.consumer
        if consumer is not None:
            for cls in consumer.handlers:
                consumers.setdefault(cls, []).append(name)
    lines = [
        "| event (`ce_type`) | producer | consumers | topic (key) | fields (`?` = optional) |",
        "|---|---|---|---|---|",
    ]
    for cls in sorted(catalogue.events(), key=lambda c: c.event_type):
        producer = cls.source.rsplit("/", 1)[-1]
        key = _key_of(cls)
        lines.append(
            f"| **{cls.__name__}**<br>`{cls.event_type}` | {producer} | {', '.join(consumers.get(cls, [])) or '—'} "
            f"| `{cls.topic}` ({key}) | {_fields(cls)} |"
        )
    return "\n".join(lines)


def _key_of(cls: type) -> str:
    fields = cls.model_fields  # type: ignore[attr-defined]
    if "subject" in fields:  # the outcome of a request: keyed like the events it follows
        return "session id, else cost centre" if cls.topic == "ilt.finance.events" else "session id"
    if "session_id" in fields and fields["session_id"].is_required():
        return "session id"
    if "session_id" in fields:
        return "session id, else cost centre"
    return "cost centre"


def request_catalogue() -> str:
    """The requests other systems may send, per inbound topic, and the service that takes them."""
    apps = _apps()
    takers: dict[type, list[str]] = {}
    for name, app in apps.items():
        consumer = app.state.runtime.consumer
        if consumer is not None:
            for cls in consumer.handlers:
                takers.setdefault(cls, []).append(name)
    lines = [
        "| request (`ce_type`) | taken by | inbound topic | what it does | fields (`?` = optional) |",
        "|---|---|---|---|---|",
    ]
    for cls in sorted(catalogue.requests(), key=lambda c: (c.topic, c.event_type)):
        doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        lines.append(
            f"| **{cls.__name__}**<br>`{cls.event_type}` | {', '.join(takers.get(cls, [])) or '—'} | `{cls.topic}` "
            f"| {doc} | {_fields(cls)} |"
        )
    return "\n".join(lines)


def endpoints() -> str:
    lines = []
    for name, app in _apps().items():
        lines.append(f"**{name}** (default port {app.state.runtime.settings.http_port})\n")
        lines.append("| method | path | what it does |")
        lines.append("|---|---|---|")
        for path, item in app.openapi()["paths"].items():
            for method, op in item.items():
                summary = (op.get("description") or op.get("summary") or "").strip().splitlines()[0]
                lines.append(f"| {method.upper()} | `{path}` | {summary} |")
        lines.append("")
    return "\n".join(lines).rstrip()


def configuration() -> str:
    from services.enrollment.settings import EnrollmentSettings
    from services.finance.settings import FinanceSettings
    from services.reporting.settings import ReportingSettings
    from services.scheduling.settings import SchedulingSettings

    lines = ["| variable | default | meaning |", "|---|---|---|"]
    common_done = False
    for cls in (SchedulingSettings, EnrollmentSettings, FinanceSettings, ReportingSettings):
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            is_common = alias is not None
            if is_common and common_done:
                continue
            if name == "service_name":
                continue
            env = str(alias.choices[0]) if is_common else f"{prefix}{name.upper()}"  # type: ignore[union-attr]
            default = field.get_default(call_default_factory=True)
            default = "—" if default is None else f"`{default}`"
            meaning = field.description or ServiceSettings.model_fields.get(name, field).description or ""
            lines.append(f"| `{env}` | {default} | {meaning} |")
        common_done = True
    return "\n".join(lines)


GENERATORS = {"events": event_catalogue, "requests": request_catalogue, "endpoints": endpoints,
              "configuration": configuration}


def render(text: str) -> str:
    for name, generate in GENERATORS.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n)(?:.*?\n)?(<!-- /generated:{name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README.md has no generated:{name} section")
        text = pattern.sub(lambda m, g=generate: m.group(1) + g() + "\n" + m.group(2), text)
    return text


def main() -> int:
    text = README.read_text()
    new = render(text)
    if "--check" in sys.argv:
        if new != text:
            print("README.md is out of date: run `python -m devstack.docs`", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
