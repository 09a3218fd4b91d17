"""Interoperability: a client that is not ours (librdkafka through confluent-kafka, the CloudEvents Python SDK's Kafka
binding, and nothing of this repository but examples/request_enrollment.py) schedules a session and requests
enrollments over Kafka in structured and binary mode, and follows what they caused on our outbound topics. Real
broker, scheduling and enrollment as processes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from devstack.stack import Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "request_enrollment.py"
YEAR = datetime.now(UTC).year + 1


def _example():
    spec = importlib.util.spec_from_file_location("request_enrollment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _example()


@pytest.fixture(scope="module")
def stack(kafka, tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("interop-stack"), services=["scheduling", "enrollment"],
               bootstrap_servers=kafka.bootstrap_servers) as running:
        yield running


@pytest.fixture(scope="module")
def config(kafka) -> dict[str, str]:
    return {"bootstrap.servers": kafka.bootstrap_servers}


@pytest.fixture(scope="module")
def session_id(stack, config) -> str:
    """A session scheduled over Kafka by an 'ERP' (binary mode, built by the CloudEvents SDK), capacity 1."""
    session_id = f"interop-{uuid.uuid4().hex[:12]}"
    plan = {"session_id": session_id, "course_code": "SWC", "title": "Software Carpentry", "delivery": "classroom",
            "venue_id": f"venue-{session_id}", "time_zone": "Europe/Berlin", "capacity": 1, "cost_centre": "CC-1",
            "slots": [{"starts_at": f"{YEAR}-06-01T09:00", "ends_at": f"{YEAR}-06-01T17:00"}]}
    positions = example.start_positions(config, "ilt.scheduling.events")
    request_id = example.publish_request(config, "ilt.scheduling.requests",
                                         "ilt.scheduling.schedule-session-requested.v1", plan, key=session_id,
                                         source="/erp")
    caused = example.follow(config, "ilt.scheduling.events", {request_id}, 30, positions)[request_id]
    assert [e.get_type() for e in caused] == ["ilt.scheduling.session-scheduled.v1",
                                              "ilt.scheduling.request-accepted.v1"]
    scheduled = caused[0].get_data()
    assert scheduled["slots"][0]["starts_at"] == f"{YEAR}-06-01T09:00:00+02:00"
    return session_id


def test_structured_then_binary_enrollment_requests_and_their_outcomes(config, session_id) -> None:
    first = example.request_enrollment(config, session_id, "learner-a", mode="structured", retry_pause=0.3)
    second = example.request_enrollment(config, session_id, "learner-b", mode="binary", retry_pause=0.3)

    outcome = first["outcome"]
    assert outcome["type"] == "ilt.enrollment.request-accepted.v1", first
    assert outcome["request_id"] == first["request_id"] and outcome["request_source"] == "/hr-portal"
    assert outcome["result"]["status"] == "enrolled" and outcome["result"]["learner_id"] == "learner-a"
    assert [e["type"] for e in first["events"]] == ["ilt.enrollment.learner-enrolled.v1"]
    assert first["events"][0]["enrollment_id"] == outcome["result"]["enrollment_id"]

    assert second["outcome"]["result"] == {**second["outcome"]["result"], "status": "waitlisted", "position": 1}
    assert [e["type"] for e in second["events"]] == ["ilt.enrollment.learner-waitlisted.v1"]


def test_cloudevents_attributes_of_our_events_read_by_the_sdk(config, session_id) -> None:
    positions = example.start_positions(config, "ilt.enrollment.events")
    request_id = example.publish_request(config, "ilt.enrollment.requests",
                                         "ilt.enrollment.enroll-learner-requested.v1",
                                         {"session_id": session_id, "learner_id": "learner-sdk"}, key=session_id,
                                         correlation_id="lms-chain-1", mode="binary")
    events = example.follow(config, "ilt.enrollment.events", {request_id}, 30, positions)[request_id]
    assert [e.get_type() for e in events] == ["ilt.enrollment.learner-waitlisted.v1",
                                              "ilt.enrollment.request-accepted.v1"]
    for event in events:
        attributes = event.get_attributes()
        assert attributes["specversion"] == "1.0"
        assert attributes["source"] == "/ilt/enrollment"
        assert attributes["subject"] == session_id and attributes["partitionkey"] == session_id  # the Kafka key
        assert attributes["datacontenttype"] == "application/json"
        assert attributes["causationid"] == request_id and attributes["correlationid"] == "lms-chain-1"
        assert event.get_time().tzinfo is not None and uuid.UUID(event.get_id())
    assert events[0].get_data()["learner_id"] == "learner-sdk" and events[0].get_data()["position"] >= 1


def test_a_duplicate_request_has_one_effect_and_a_malformed_one_is_dead_lettered(config, session_id) -> None:
    positions = example.start_positions(config, "ilt.enrollment.events")
    dead_positions = example.start_positions(config, "ilt.enrollment.dead-letter")
    duplicate = str(uuid.uuid4())
    for _ in range(2):
        example.publish_request(config, "ilt.enrollment.requests", "ilt.enrollment.enroll-learner-requested.v1",
                                {"session_id": session_id, "learner_id": "learner-dup"}, key=session_id,
                                request_id=duplicate)
    producer = Producer(config)  # a request without learner_id, by hand: binary mode headers
    producer.produce("ilt.enrollment.requests", key=session_id.encode(), value=json.dumps({
        "session_id": session_id}).encode(), headers=[
        ("ce_specversion", b"1.0"), ("ce_id", b"malformed-" + duplicate.encode()), ("ce_source", b"/hr-portal"),
        ("ce_type", b"ilt.enrollment.enroll-learner-requested.v1"), ("content-type", b"application/json")])
    assert producer.flush(15) == 0
    # a marker after both, on the same partition (same key): once it is answered, the others were processed
    marker = example.publish_request(config, "ilt.enrollment.requests", "ilt.enrollment.enroll-learner-requested.v1",
                                     {"session_id": session_id, "learner_id": "learner-marker"}, key=session_id)
    caused = example.follow(config, "ilt.enrollment.events", {duplicate, marker}, 30, positions)
    assert [e.get_type() for e in caused[duplicate]] == ["ilt.enrollment.learner-waitlisted.v1",
                                                         "ilt.enrollment.request-accepted.v1"]
    assert caused[marker][-1].get_type() == "ilt.enrollment.request-accepted.v1"

    consumer = Consumer({**config, "group.id": f"dl-{uuid.uuid4()}", "enable.auto.commit": False})
    consumer.assign(dead_positions)
    try:
        found = None
        for _ in range(100):
            for message in consumer.consume(num_messages=100, timeout=0.2):
                headers = dict(message.headers() or [])
                if headers.get("ce_id") == b"malformed-" + duplicate.encode():
                    found = headers
            if found:
                break
    finally:
        consumer.close()
    assert found is not None
    assert found["dlq_reason"] == b"invalid_payload" and b"learner_id" in found["dlq_error"]
    assert found["dlq_original_topic"] == b"ilt.enrollment.requests"


def test_the_example_script_from_the_readme_and_a_retryable_rejection(config, session_id) -> None:
    run = subprocess.run([sys.executable, str(SCRIPT), "--bootstrap", config["bootstrap.servers"], "--session",
                          session_id, "--learner", "learner-cli", "--mode", "structured", "--timeout", "30"],
                         capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    assert printed["outcome"]["result"]["status"] == "waitlisted" and printed["attempts"] == 1

    unknown = subprocess.run([sys.executable, str(SCRIPT), "--bootstrap", config["bootstrap.servers"], "--session",
                              f"never-scheduled-{uuid.uuid4().hex[:8]}", "--learner", "learner-x", "--retries", "0"],
                             capture_output=True, text=True, timeout=90)
    assert unknown.returncode == 2, unknown.stderr
    rejected = json.loads(unknown.stdout)["outcome"]
    assert (rejected["error"], rejected["retryable"]) == ("unknown_session", True)
