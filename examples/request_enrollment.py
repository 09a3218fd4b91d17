#!/usr/bin/env python3
"""Request an enrollment over Kafka and follow its outcome, knowing nothing but the published contract.

Uses librdkafka (``confluent-kafka``) and the CloudEvents Python SDK (``cloudevents``), not the back office's code:

    pip install confluent-kafka cloudevents
    python examples/request_enrollment.py --bootstrap localhost:9092 --session swc-2030-berlin-1 \\
        --learner learner-0042 [--mode structured|binary] [--source /hr-portal] \\
        [-X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512 -X sasl.username=hr-portal -X sasl.password=...]

It publishes ``ilt.enrollment.enroll-learner-requested.v1`` (contracts/v1/) on ``ilt.enrollment.requests``, then
reads ``ilt.enrollment.events`` for what the request caused (``ce_causationid`` = the request's id): the
``LearnerEnrolled``/``LearnerWaitlisted`` event and exactly one outcome, ``request-accepted`` or
``request-rejected``. A rejection marked ``retryable`` (the session is not known to enrollment yet) is sent again,
with a new id, after a pause. Prints the outcome as JSON; exit status 0 accepted, 2 rejected, 1 no outcome in time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

REQUESTS_TOPIC = "ilt.enrollment.requests"
EVENTS_TOPIC = "ilt.enrollment.events"
ENROLL = "ilt.enrollment.enroll-learner-requested.v1"
OUTCOME_SUFFIXES = (".request-accepted.v1", ".request-rejected.v1")  # ilt.<service>.request-...


def publish_request(config: dict[str, str], topic: str, event_type: str, data: dict[str, Any], *, key: str,
                    mode: str = "binary", source: str = "/hr-portal", correlation_id: str | None = None,
                    request_id: str | None = None) -> str:
    """Publish one request as a CloudEvent (binary or structured mode); returns its id."""
    attributes = {"type": event_type, "source": source, "subject": key, "datacontenttype": "application/json",
                  "id": request_id or str(uuid.uuid4()), "partitionkey": key}
    if correlation_id:
        attributes["correlationid"] = correlation_id
    event = CloudEvent(attributes, data)
    message = ce_kafka.to_structured_event(event) if mode == "structured" else ce_kafka.to_binary_event(event)
    producer = Producer({**config, "acks": "all", "enable.idempotence": False})
    failures: list[Any] = []
    producer.produce(topic, value=message.value, key=message.key, headers=list(message.headers.items()),
                     on_delivery=lambda err, _msg: failures.append(err) if err else None)
    if producer.flush(15) or failures:
        raise RuntimeError(f"request not acknowledged by the broker: {failures}")
    return str(event.get_id())


def follow(config: dict[str, str], topic: str, request_ids: set[str], timeout: float = 30.0,
           positions: list[TopicPartition] | None = None) -> dict[str, list[CloudEvent]]:
    """The events on ``topic`` caused by each request, until each has its outcome (or the deadline passed)."""
    # partitions are assigned, nothing is committed: the group id is only a name (-X group.id=... overrides it)
    consumer = Consumer({"group.id": f"follow-{uuid.uuid4()}", **config, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    try:
        consumer.assign(positions or start_positions(config, topic))
        caused: dict[str, list[CloudEvent]] = {r: [] for r in request_ids}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(_done(events) for events in caused.values()):
            for message in consumer.consume(num_messages=500, timeout=0.2):
                if message.error():
                    continue
                headers = {k: v for k, v in (message.headers() or []) if v is not None}
                cause = headers.get("ce_causationid", b"").decode()
                if cause in caused:
                    event = ce_kafka.from_binary_event(
                        ce_kafka.KafkaMessage(headers=headers, key=message.key(), value=message.value()))
                    caused[cause].append(event)
        return caused
    finally:
        consumer.close()


def start_positions(config: dict[str, str], topic: str) -> list[TopicPartition]:
    """Where to start reading so that nothing published after this call is missed (the high-water marks; a broker
    that reports them too low only makes us read a few records more)."""
    consumer = Consumer({"group.id": f"positions-{uuid.uuid4()}", **config, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        out = []
        for p in partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            out.append(TopicPartition(topic, p, high if high >= 0 else OFFSET_BEGINNING))
        return out
    finally:
        consumer.close()


def is_outcome(event: CloudEvent) -> bool:
    return event.get_type().endswith(OUTCOME_SUFFIXES)


def _done(events: list[CloudEvent]) -> bool:
    return any(is_outcome(e) for e in events)


def outcome_of(events: list[CloudEvent]) -> dict[str, Any] | None:
    for event in events:
        if is_outcome(event):
            return {"type": event.get_type(), "id": event.get_id(), "source": event.get_source(),
                    "correlationid": event.get_extension("correlationid"), **event.get_data()}
    return None


def request_enrollment(config: dict[str, str], session_id: str, learner_id: str, *, mode: str = "binary",
                       source: str = "/hr-portal", timeout: float = 30.0, retries: int = 5,
                       retry_pause: float = 2.0) -> dict[str, Any]:
    """Request the enrollment, follow it, send it again while the rejection says retryable. Returns
    {"outcome": ..., "events": [...], "attempts": n}; outcome None when none arrived in time."""
    correlation_id = str(uuid.uuid4())  # one chain for every attempt
    attempts = 0
    while True:
        attempts += 1
        positions = start_positions(config, EVENTS_TOPIC)
        request_id = publish_request(config, REQUESTS_TOPIC, ENROLL, {"session_id": session_id,
                                     "learner_id": learner_id}, key=session_id, mode=mode, source=source,
                                     correlation_id=correlation_id)
        events = follow(config, EVENTS_TOPIC, {request_id}, timeout, positions)[request_id]
        outcome = outcome_of(events)
        summary = {"request_id": request_id, "outcome": outcome, "attempts": attempts,
                   "events": [{"type": e.get_type(), "id": e.get_id(), **e.get_data()} for e in events
                              if not is_outcome(e)]}
        if outcome and outcome["type"].endswith("request-rejected.v1") and outcome.get("retryable") \
                and attempts <= retries:
            time.sleep(retry_pause)
            continue
        return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers host:port[,host:port]")
    parser.add_argument("--session", required=True, help="session id (as scheduled)")
    parser.add_argument("--learner", required=True, help="opaque learner id (no names or e-mail addresses)")
    parser.add_argument("--mode", choices=("binary", "structured"), default="binary")
    parser.add_argument("--source", default="/hr-portal", help="CloudEvents source naming this sender")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--retries", type=int, default=5, help="resends of a retryable rejection")
    parser.add_argument("-X", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="librdkafka property, e.g. security.protocol=SASL_SSL (repeatable)")
    args = parser.parse_args(argv)
    config = {"bootstrap.servers": args.bootstrap, **dict(x.split("=", 1) for x in args.extra)}
    result = request_enrollment(config, args.session, args.learner, mode=args.mode, source=args.source,
                                timeout=args.timeout, retries=args.retries)
    print(json.dumps(result, indent=2, default=str))
    if result["outcome"] is None:
        return 1
    return 0 if result["outcome"]["type"].endswith("request-accepted.v1") else 2


if __name__ == "__main__":
    sys.exit(main())
