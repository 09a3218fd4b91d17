"""Writes the published contract catalogue: ``contracts/v1/<type>.json`` (one JSON Schema per event and request type,
older versions included) and ``contracts/v1/catalogue.json`` (the index).

``python -m devstack.contracts``            write them (refuses a change that would break a reader of a committed
                                            schema: raise the type's version instead, see shared/contracts/legacy.py)
``python -m devstack.contracts --check``    exit 1 when the committed files are out of date
``python -m devstack.contracts --allow-breaking``   write even so (a deliberate break: say so in the commit)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from shared.contracts.schemas import CATALOGUE_VERSION, breaking_changes, published_schemas

ROOT = Path(__file__).resolve().parent.parent
DIRECTORY = ROOT / "contracts" / CATALOGUE_VERSION


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def index(schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "catalogue": CATALOGUE_VERSION,
        "description": "The published contract of the ILT back office: one JSON Schema per CloudEvents type. "
        "Events are published in Kafka binary mode on the outbound topics; requests are accepted in binary or "
        "structured mode on the inbound topics. A type's version (.vN) is raised for any change that would break "
        "a reader; older versions stay readable (status superseded, read_as the current type).",
        "types": [
            {"type": name, "file": f"{name}.json", **{k: v for k, v in s["x-cloudevents"].items() if k != "type"}}
            for name, s in schemas.items()
        ],
    }


def expected_files() -> dict[str, str]:
    schemas = published_schemas()
    files = {f"{name}.json": dumps(schema) for name, schema in schemas.items()}
    files["catalogue.json"] = dumps(index(schemas))
    return files


def committed_files(directory: Path = DIRECTORY) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.glob("*.json"))} if directory.is_dir() else {}


def breaking(directory: Path = DIRECTORY) -> dict[str, list[str]]:
    """{type: problems} for every committed schema that the current models would break."""
    current = published_schemas()
    out = {}
    for name, text in committed_files(directory).items():
        if name == "catalogue.json":
            continue
        event_type = name.removesuffix(".json")
        if event_type not in current:
            out[event_type] = ["type no longer published or readable (keep the old version readable: legacy.py)"]
            continue
        problems = breaking_changes(json.loads(text), current[event_type])
        if problems:
            out[event_type] = problems
    return out


def main(argv: list[str]) -> int:
    expected = expected_files()
    committed = committed_files()
    if "--check" in argv:
        if expected != committed:
            print("contracts/ is out of date: run `python -m devstack.contracts`", file=sys.stderr)
            return 1
        return 0
    problems = breaking()
    if problems and "--allow-breaking" not in argv:
        for event_type, found in problems.items():
            print(f"{event_type}: " + "; ".join(found), file=sys.stderr)
        print("these changes would break readers of published types: raise the version of the type (keep the old "
              "model and an upcaster in shared/contracts/legacy.py), or pass --allow-breaking", file=sys.stderr)
        return 1
    DIRECTORY.mkdir(parents=True, exist_ok=True)
    for stale in set(committed) - set(expected):
        (DIRECTORY / stale).unlink()
    for name, text in expected.items():
        (DIRECTORY / name).write_text(text)
    print(f"wrote {len(expected)} files to {DIRECTORY.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
