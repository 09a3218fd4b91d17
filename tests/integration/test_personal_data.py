"""Learners' personal data never reach the logs or the dead-letter reasons in clear.

A client system may (against the advice of the contract) use an e-mail address as the opaque learner id. The
services take commands with such ids (accepted, repeated, refused, waitlisted, cancelled, attendance) at DEBUG
level; then a payload carrying the address that fails validation is published on the enrollment topic, so finance
and reporting dead-letter it. The address appears in none of the four service logs, in no header of the
dead-letter records and in no dead-letter document of the stores.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devstack.stack import Stack
from shared.contracts.topics import ENROLLMENT_EVENTS, dead_letter_topic
from shared.messaging.envelope import encode_headers

pytestmark = pytest.mark.integration

YEAR = datetime.now(UTC).year + 1


def poll(fetch, until, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not reached; last value: {value}")
        time.sleep(0.05)


async def publish_invalid(servers: str, session_id: str, email: str) -> str:
    """A LearnerEnrolled whose payload fails validation (no enrollment_id, a bad occurred_at) and names the
    learner by e-mail address."""
    event_id = str(uuid.uuid4())
    headers = encode_headers(id=event_id, source="/ilt/enrollment", type="ilt.enrollment.learner-enrolled.v1",
                             time=datetime.now(UTC), subject=session_id, correlation_id=None, causation_id=None)
    value = (f'{{"session_id": "{session_id}", "learner_id": "{email}", "occurred_at": "{email}", '
             f'"promoted_from_waitlist": "{email}"}}').encode()
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        await producer.send_and_wait(ENROLLMENT_EVENTS, value=value, key=session_id.encode(), headers=headers)
    finally:
        await producer.stop()
    return event_id


async def dead_letters(servers: str, topic: str, event_id: str, timeout: float = 30.0) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            found = [r for rs in batches.values() for r in rs if ("ce_id", event_id.encode()) in r.headers]
            if found:
                return found
        raise TimeoutError(f"no dead letter of {event_id} on {topic}")
    finally:
        await consumer.stop()


def test_learner_emails_are_not_in_logs_nor_dead_letters(kafka, tmp_path) -> None:
    run = uuid.uuid4().hex[:8]
    email = f"ann.smith.{run}@example.org"
    other = f"bob.jones.{run}@example.org"
    with Stack(tmp_path, bootstrap_servers=kafka.bootstrap_servers,
               extra_env={"LOG_LEVEL": "DEBUG", "ENROLLMENT_SESSION_WAIT_SECONDS": "0.2"}) as stack:
        sched, enrol = stack.url("scheduling"), stack.url("enrollment")
        with httpx.Client(timeout=30, headers=stack.headers()) as http:
            session_id = f"pii-{run}"
            start = datetime.now(UTC) + timedelta(days=30)
            r = http.post(f"{sched}/sessions", json={
                "session_id": session_id, "course_code": "SWC", "title": "Software Carpentry",
                "delivery": "classroom", "venue_id": f"room-{run}", "time_zone": "UTC", "capacity": 1,
                "cost_centre": "CC-PII",
                "slots": [{"starts_at": start.strftime("%Y-%m-%dT09:00"), "ends_at": start.strftime("%Y-%m-%dT17:00")}]})
            assert r.status_code == 201, r.text
            enroll = f"{enrol}/sessions/{session_id}/enrollments"
            first = poll(lambda: http.post(enroll, json={"learner_id": email}), lambda r: r.status_code != 404)
            assert first.status_code == 201 and first.json()["status"] == "enrolled"
            assert http.post(enroll, json={"learner_id": email}).status_code == 200  # again: the same one
            waiting = http.post(enroll, json={"learner_id": other})
            assert waiting.json()["status"] == "waitlisted"
            # refused commands: attendance before the start, unknown session, a bad body with the address in it
            refused = http.post(f"{enrol}/enrollments/{first.json()['enrollment_id']}/attendance",
                                json={"status": "attended"})
            assert refused.status_code in (409, 422)
            assert http.post(f"{enrol}/sessions/nope-{run}/enrollments", json={"learner_id": email}).status_code == 404
            assert http.post(enroll, json={"learner_id": email, "as_of": email}).status_code == 422
            batch = http.post(f"{enroll}/batch", json={"learners": [email, other, f"carl.{run}@example.org"]})
            assert batch.status_code == 200, batch.text
            cancelled = http.post(f"{enrol}/enrollments/{first.json()['enrollment_id']}/cancel", json={})
            assert cancelled.status_code == 200  # promotes the waitlisted learner
            stack.wait_quiescent(timeout=60)

            event_id = asyncio.run(publish_invalid(kafka.bootstrap_servers, session_id, email))
            for consumer in ("finance", "reporting"):
                found = asyncio.run(dead_letters(kafka.bootstrap_servers, dead_letter_topic(consumer), event_id))
                headers = dict(found[0].headers)
                assert headers["dlq_reason"] == b"invalid_payload"
                assert b"enrollment_id" in headers["dlq_error"]  # the field is named ...
                for name, value in found[0].headers:  # ... the address is not, in no header
                    assert email.encode() not in value, (consumer, name, value)
            poll(lambda: http.get(f"{stack.url('reporting')}/status").json()["dead_lettered"],
                 lambda n: n >= 1)
    # stopped: every log line is written
    for name in ("scheduling", "enrollment", "finance", "reporting"):
        log = (tmp_path / f"{name}.log").read_text(encoding="utf-8", errors="replace")
        assert log, f"{name} wrote no log"
        for address in (email, other, email.split("@")[0]):
            assert address not in log, f"{name}.log contains a learner's e-mail address"
        with sqlite3.connect(tmp_path / f"{name}.db") as db:
            rows = db.execute("SELECT body FROM documents WHERE collection = 'dead-letters'").fetchall()
        for (body,) in rows:
            assert email.encode() not in (body if isinstance(body, bytes) else body.encode())
    assert "record dead-lettered" in (tmp_path / "reporting.log").read_text()
