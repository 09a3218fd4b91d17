"""Exports each service's AsyncAPI 3.0 document to ``asyncapi/<service>.yaml`` (what ``GET /asyncapi.yaml`` serves).

``python -m devstack.asyncapi`` writes them; ``--check`` exits 1 when the committed files are out of date.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from shared import asyncapi

ROOT = Path(__file__).resolve().parent.parent
DIRECTORY = ROOT / "asyncapi"
SERVICES = ("scheduling", "enrollment", "finance", "reporting")


def expected_files() -> dict[str, str]:
    out = {}
    for name in SERVICES:
        app = importlib.import_module(f"services.{name}.bootstrap").build()
        out[f"{name}.yaml"] = asyncapi.to_yaml(asyncapi.for_app(app))
    return out


def committed_files() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(DIRECTORY.glob("*.yaml"))} if DIRECTORY.is_dir() else {}


def main(argv: list[str]) -> int:
    expected = expected_files()
    if "--check" in argv:
        if expected != committed_files():
            print("asyncapi/ is out of date: run `python -m devstack.asyncapi`", file=sys.stderr)
            return 1
        return 0
    DIRECTORY.mkdir(exist_ok=True)
    for name, text in expected.items():
        (DIRECTORY / name).write_text(text)
    print(f"wrote {', '.join(sorted(expected))} to {DIRECTORY.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
