"""AsyncAPI 3.0 documents of the services: exported files up to date, served by each service, valid for the official
parser (``@asyncapi/parser`` 3 on Node, installed into tools/asyncapi by ``make`` or by this test), and useful: every
message a service takes or sends, with its CloudEvents headers and payload schema."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from devstack import asyncapi as exporter
from shared.contracts.base import catalogue

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "asyncapi"


@pytest.fixture(scope="module")
def exported() -> dict[str, str]:
    return exporter.expected_files()


def test_exported_documents_are_up_to_date(exported) -> None:
    assert exporter.committed_files() == exported, "asyncapi/ is out of date: run `.venv/bin/python -m devstack.asyncapi`"


@pytest.mark.parametrize("service", exporter.SERVICES)
def test_each_service_serves_its_document(service, monkeypatch) -> None:
    monkeypatch.setenv("ILT_AUTH", "disabled")
    app = importlib.import_module(f"services.{service}.bootstrap").build()
    client = TestClient(app)  # no lifespan: no broker needed to describe the interface
    as_yaml = client.get("/asyncapi.yaml")
    assert as_yaml.status_code == 200 and as_yaml.headers["content-type"].startswith("application/yaml")
    assert as_yaml.text == (ROOT / "asyncapi" / f"{service}.yaml").read_text()
    as_json = client.get("/asyncapi.json")
    assert as_json.status_code == 200 and as_json.json() == yaml.safe_load(as_yaml.text)


def test_documents_name_every_message_with_headers_and_payload(exported) -> None:
    enrollment = yaml.safe_load(exported["enrollment.yaml"])
    assert enrollment["asyncapi"] == "3.0.0"
    channels = {c["address"]: c for c in enrollment["channels"].values()}
    assert set(channels) == {"ilt.scheduling.events", "ilt.enrollment.requests", "ilt.enrollment.events",
                             "ilt.enrollment.dead-letter"}
    assert set(channels["ilt.enrollment.requests"]["messages"]) == {
        "ilt.enrollment.enroll-learner-requested.v1", "ilt.enrollment.cancel-enrollment-requested.v1",
        "ilt.enrollment.record-attendance-requested.v1"}
    assert set(channels["ilt.enrollment.events"]["messages"]) == {
        c.event_type for c in catalogue.events() if c.topic == "ilt.enrollment.events"}
    enroll = enrollment["components"]["messages"]["ilt.enrollment.enroll-learner-requested.v1"]
    assert enroll["headers"]["properties"]["ce_type"]["const"] == "ilt.enrollment.enroll-learner-requested.v1"
    payload = enrollment["components"]["schemas"][enroll["payload"]["$ref"].rsplit("/", 1)[-1]]
    assert set(payload["required"]) == {"session_id", "learner_id"} and payload["additionalProperties"] is False
    enrolled = enrollment["components"]["messages"]["ilt.enrollment.learner-enrolled.v1"]
    assert enrolled["headers"]["properties"]["ce_source"]["const"] == "/ilt/enrollment"
    actions = {op["channel"]["$ref"].rsplit("/", 1)[-1]: op["action"] for op in enrollment["operations"].values()}
    assert actions == {"ilt-scheduling-events": "receive", "ilt-enrollment-requests": "receive",
                       "ilt-enrollment-events": "send", "ilt-enrollment-dead-letter": "send"}
    reporting = yaml.safe_load(exported["reporting.yaml"])
    assert not [op for op in reporting["operations"].values()
                if op["action"] == "send" and "dead-letter" not in op["channel"]["$ref"]]


def _parser() -> Path:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the AsyncAPI documents are not validated with @asyncapi/parser")
    if not (TOOLS / "node_modules" / "@asyncapi" / "parser").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: cannot install @asyncapi/parser")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefix", str(TOOLS)], check=True,
                       capture_output=True, timeout=300)
    return Path(node)


def test_documents_are_valid_asyncapi_for_the_official_parser() -> None:
    node = _parser()
    files = sorted(str(p) for p in (ROOT / "asyncapi").glob("*.yaml"))
    assert len(files) == 4
    run = subprocess.run([str(node), str(TOOLS / "validate.mjs"), *files], capture_output=True, text=True,
                         timeout=120, cwd=TOOLS)
    results = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r for r in results if r["errors"] or not r["parsed"]] == [] and run.returncode == 0, run.stderr
    by_file = {Path(r["file"]).stem: r["summary"] for r in results}
    assert by_file["scheduling"]["version"] == "3.0.0"
    assert sorted(by_file["scheduling"]["channels"]) == ["ilt.scheduling.dead-letter", "ilt.scheduling.events",
                                                          "ilt.scheduling.requests"]
    assert "ilt.finance.record-cost-requested.v1" in by_file["finance"]["messages"]


def test_the_parser_rejects_a_broken_document(tmp_path) -> None:
    """The validation can fail: a message pointing at a payload that does not exist."""
    node = _parser()
    doc = yaml.safe_load((ROOT / "asyncapi" / "scheduling.yaml").read_text())
    message = doc["components"]["messages"]["ilt.scheduling.schedule-session-requested.v1"]
    message["payload"] = {"$ref": "#/components/schemas/NoSuchSchema"}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(doc))
    run = subprocess.run([str(node), str(TOOLS / "validate.mjs"), str(broken)], capture_output=True, text=True,
                         timeout=120, cwd=TOOLS)
    assert run.returncode == 1
    assert json.loads(run.stdout)["errors"][0]["code"] == "invalid-ref"
