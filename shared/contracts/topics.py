"""Kafka topics of the public contract. Key = aggregate id.

One outbound topic per producing service (its events, and the outcome of every request it took), one inbound
topic per command-taking service (requests from other systems, ``ilt.<service>.requests``), and one dead-letter
topic per consuming service."""

SCHEDULING_EVENTS = "ilt.scheduling.events"
ENROLLMENT_EVENTS = "ilt.enrollment.events"
FINANCE_EVENTS = "ilt.finance.events"

EVENT_TOPICS = (SCHEDULING_EVENTS, ENROLLMENT_EVENTS, FINANCE_EVENTS)

SCHEDULING_REQUESTS = "ilt.scheduling.requests"
ENROLLMENT_REQUESTS = "ilt.enrollment.requests"
FINANCE_REQUESTS = "ilt.finance.requests"

REQUEST_TOPICS = (SCHEDULING_REQUESTS, ENROLLMENT_REQUESTS, FINANCE_REQUESTS)


def dead_letter_topic(consumer: str) -> str:
    """Where a consumer parks what it could not process (with the error in the headers)."""
    return f"ilt.{consumer}.dead-letter"


CONSUMERS = ("scheduling", "enrollment", "finance", "reporting")
DEAD_LETTER_TOPICS = tuple(dead_letter_topic(c) for c in CONSUMERS)
ALL_TOPICS = EVENT_TOPICS + REQUEST_TOPICS + DEAD_LETTER_TOPICS
DEFAULT_PARTITIONS = 6
