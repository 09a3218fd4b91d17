"""The published contract: committed JSON Schemas up to date, no breaking change to a published type, every
published type still readable, and older versions read as the current model (upcasting) from Kafka and the store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest

from devstack import contracts
from services.reporting.application import queries
from services.reporting.application.policies import HANDLERS as REPORTING
from shared.contracts.base import catalogue
from shared.contracts.finance import CostIncurred
from shared.contracts.schemas import breaking_changes, published_schemas
from shared.messaging.consumer import EventConsumer
from shared.messaging.envelope import Envelope, decode
from shared.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parents[2]
V0_FIXTURE = ROOT / "tests" / "fixtures" / "events" / "ilt.finance.cost-incurred.v0.json"


def test_committed_schemas_are_up_to_date() -> None:
    expected, committed = contracts.expected_files(), contracts.committed_files()
    assert sorted(committed) == sorted(expected), "run `.venv/bin/python -m devstack.contracts`"
    stale = [name for name in expected if expected[name] != committed[name]]
    assert not stale, f"contracts/v1 out of date ({', '.join(stale)}): run `.venv/bin/python -m devstack.contracts`"


def test_every_event_and_request_type_has_a_schema_that_its_own_messages_satisfy() -> None:
    schemas = published_schemas()
    assert {c.event_type for c in catalogue.types()} <= set(schemas)
    assert len([s for s in schemas.values() if s["x-cloudevents"]["kind"] == "request"]) == 9
    from tests.unit.test_requests import schedule_request  # a realistic request of each service's kind

    request = schedule_request("s-1", planned_costs=[{"category": "venue_hire", "cost_centre": "CC-1",
                                                      "amount": {"amount": "500.00", "currency": "EUR"}}])
    jsonschema.validate(json.loads(request.model_dump_json(exclude_unset=True)), schemas[request.event_type])
    for record in json.loads(V0_FIXTURE.read_text())["records"]:
        jsonschema.validate(record["value"], schemas["ilt.finance.cost-incurred.v0"])
        current = decode(json.dumps(record["value"]).encode(), list(_headers(record)))
        jsonschema.validate(json.loads(Envelope(data=current.data).value()), schemas[CostIncurred.event_type])


def test_no_published_type_is_changed_in_a_way_that_breaks_its_readers() -> None:
    problems = contracts.breaking()
    assert not problems, ("breaking change(s) to published types; raise the type's version and keep the old one "
                          f"readable (shared/contracts/legacy.py): {problems}")


def test_no_breaking_change_since_each_schema_was_first_committed() -> None:
    """The committed file could be overwritten (--allow-breaking): compare with the first commit of each file."""
    try:
        added = subprocess.run(
            ["git", "log", "--diff-filter=A", "--format=%H", "--name-only", "--", "contracts/v1/"],
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"no git history to compare with: {exc}")
    first: dict[str, str] = {}
    commit = ""
    for line in added.splitlines():
        if len(line) == 40 and " " not in line and "/" not in line:
            commit = line
        elif line.startswith("contracts/v1/") and line.endswith(".json"):
            first[line] = commit  # git log is newest first: the last seen is the first commit
    if not first:
        pytest.skip("contracts/v1 is not in the git history yet (shallow clone or not committed)")
    current = published_schemas()
    problems = {}
    for path, sha in first.items():
        event_type = Path(path).name.removesuffix(".json")
        if event_type == "catalogue":
            continue
        original = subprocess.run(["git", "show", f"{sha}:{path}"], cwd=ROOT, capture_output=True, text=True,
                                  check=True).stdout
        if event_type not in current:
            problems[event_type] = ["no longer published or readable"]
        elif found := breaking_changes(json.loads(original), current[event_type]):
            problems[event_type] = found
    assert not problems, f"breaking change(s) since first published: {problems}"


def test_every_committed_type_stays_readable() -> None:
    committed = [n.removesuffix(".json") for n in contracts.committed_files() if n != "catalogue.json"]
    assert "ilt.finance.cost-incurred.v0" in committed
    unreadable = [t for t in committed if catalogue.current_type(t) is None]
    assert unreadable == []


# the compatibility rules ------------------------------------------------------------------------------------------

BASE = {
    "type": "object",
    "properties": {
        "session_id": {"type": "string"},
        "capacity": {"type": "integer"},
        "status": {"enum": ["attended", "partial", "no_show"], "type": "string"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "amount": {"$ref": "#/$defs/Money"},
        "slots": {"type": "array", "items": {"$ref": "#/$defs/Slot"}},
    },
    "required": ["session_id", "capacity", "status", "amount"],
    "$defs": {
        "Money": {"type": "object", "properties": {"amount": {"type": "string"}, "currency": {"type": "string"}},
                  "required": ["amount", "currency"]},
        "Slot": {"type": "object", "properties": {"starts_at": {"type": "string", "format": "date-time"}},
                 "required": ["starts_at"]},
    },
}


def changed(edit) -> dict:
    schema = json.loads(json.dumps(BASE))
    edit(schema)
    return schema


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda s: s["properties"].pop("capacity"), "capacity: field removed (or renamed)"),
    (lambda s: s["properties"].__setitem__("seats", s["properties"].pop("capacity")),
     "capacity: field removed (or renamed)"),
    (lambda s: s["properties"].__setitem__("capacity", {"type": "string"}),
     "capacity: type changed from integer to string"),
    (lambda s: s["required"].append("note"), "note: optional field made required"),
    (lambda s: s["properties"]["status"].__setitem__("enum", ["attended", "no_show"]),
     "status: enum value(s) removed: partial"),
    (lambda s: s["$defs"]["Money"]["properties"].__setitem__("amount", {"type": "number"}),
     "amount.amount: type changed from string to number"),
    (lambda s: s["$defs"]["Slot"]["properties"].pop("starts_at"), "slots[].starts_at: field removed (or renamed)"),
    (lambda s: s["$defs"]["Slot"]["properties"]["starts_at"].__setitem__("format", "date"),
     "slots[].starts_at: format changed from date-time to date"),
    (lambda s: (s["properties"].__setitem__("venue_id", {"type": "string"}), s["required"].append("venue_id")),
     "venue_id: new required field"),
    (lambda s: s["properties"].__setitem__("note", {"type": "string"}), "note: type changed from null|string to string"),
])
def test_breaking_changes_are_named(edit, expected) -> None:
    assert expected in breaking_changes(BASE, changed(edit))


@pytest.mark.parametrize("edit", [
    lambda s: s["properties"].__setitem__("venue_id", {"type": "string"}),  # optional field added
    lambda s: s["properties"]["status"]["enum"].append("excused"),  # enum value added
    lambda s: s["required"].remove("capacity"),  # required made optional: old senders still valid
    lambda s: s["properties"].__setitem__("capacity", {"anyOf": [{"type": "integer"}, {"type": "null"}]}),  # widened
    lambda s: s["properties"]["session_id"].__setitem__("description", "The session."),
])
def test_compatible_changes_pass(edit) -> None:
    assert breaking_changes(BASE, changed(edit)) == []


def test_the_real_catalogue_is_compatible_with_itself_and_a_removed_field_is_caught() -> None:
    schemas = published_schemas()
    enrolled = schemas["ilt.enrollment.learner-enrolled.v1"]
    assert breaking_changes(enrolled, enrolled) == []
    broken = json.loads(json.dumps(enrolled))
    del broken["properties"]["learner_id"]
    assert breaking_changes(enrolled, broken) == ["learner_id: field removed (or renamed)"]


# upcasting: an older version read as the current model --------------------------------------------------------


def _headers(record: dict) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in record["headers"].items()]


def v0_records() -> list[dict]:
    return json.loads(V0_FIXTURE.read_text())["records"]


def test_v0_records_from_kafka_decode_as_the_current_cost_incurred() -> None:
    decoded = [decode(json.dumps(r["value"]).encode(), _headers(r)) for r in v0_records()]
    assert all(isinstance(e.data, CostIncurred) for e in decoded)
    assert [e.type for e in decoded] == ["ilt.finance.cost-incurred.v1"] * 4
    assert [(e.data.reason, str(e.data.amount.amount), e.data.amount.currency) for e in decoded] == [
        ("planned_cost", "850.00", "EUR"), ("per_learner", "42.50", "EUR"),
        ("enrollment_cancelled", "-42.50", "EUR"), ("invoice", "830.00", "EUR")]
    assert decoded[2].data.reverses == "pilot-cost-0002" and decoded[3].data.invoice_ref == "HOTEL-2025-0419"
    assert decoded[1].id == "0b6f3c52-6a0e-4a39-9d0e-51c4d5a1e102"
    assert decoded[2].causation_id == "c3d4e5f6-0718-4293-a4b5-c6d7e8f90303"


def test_a_v0_record_that_breaks_the_v0_schema_is_still_refused() -> None:
    from shared.messaging.envelope import UndecodableEvent

    record = v0_records()[0]
    broken = {**record["value"], "amount": 850.0}  # a float never was an amount
    with pytest.raises(UndecodableEvent) as err:
        decode(json.dumps(broken).encode(), _headers(record))
    assert err.value.reason == "invalid_payload"


async def test_stored_v0_events_are_read_as_the_current_model_and_projected(tmp_path) -> None:
    """A store written by the pilot: its events read back upcast, and reporting projects them like v1 events."""
    path = tmp_path / "finance.db"
    store = SQLiteStore(str(path))
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        for version, record in enumerate(v0_records()[:2], start=1):
            h = record["headers"]
            db.execute("INSERT INTO events (stream_id, version, event_id, event_type, time, correlation_id,"
                       " causation_id, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       ("session-pilot-swc-2025-05", version, h["ce_id"], h["ce_type"], h["ce_time"],
                        h["ce_correlationid"], h["ce_causationid"], json.dumps(record["value"]).encode()))
    store = SQLiteStore(str(path))
    await store.open()
    try:
        stream = await store.read_stream("session-pilot-swc-2025-05")
        assert [type(r.envelope.data) for r in stream] == [CostIncurred, CostIncurred]
        assert [r.envelope.data.reason for r in stream] == ["planned_cost", "per_learner"]
        assert [r.envelope.data.reason async for r in store.read_all()] == ["planned_cost", "per_learner"]
    finally:
        await store.close()

    reporting = SQLiteStore(str(tmp_path / "reporting.db"))
    await reporting.open()
    try:
        class NoDeadLetters:
            async def send(self, *args) -> None:
                raise AssertionError("nothing may be dead-lettered")

        consumer = EventConsumer("reporting", reporting, dict(REPORTING), NoDeadLetters(), "ilt.reporting.dead-letter")
        await consumer.process_batch([
            SimpleNamespace(topic=r["topic"], partition=0, offset=n, key=r["key"].encode(), headers=_headers(r),
                            value=json.dumps(r["value"]).encode())
            for n, r in enumerate(v0_records())])
        line = (await queries.cost_centre_budgets(reporting, "CC-PILOT", period="2025"))["budgets"][0]
        assert (line["committed"], line["actual"]) == ("850.00", "830.00")
    finally:
        await reporting.close()
