"""Kafka topics of the public contract. One topic per producing service; key = aggregate id."""

SCHEDULING_EVENTS = "ilt.scheduling.events"
ENROLLMENT_EVENTS = "ilt.enrollment.events"
FINANCE_EVENTS = "ilt.finance.events"

EVENT_TOPICS = (SCHEDULING_EVENTS, ENROLLMENT_EVENTS, FINANCE_EVENTS)


def dead_letter_topic(consumer: str) -> str:
    """Where a consumer parks what it could not process (with the error in the headers)."""
    return f"ilt.{consumer}.dead-letter"


CONSUMERS = ("enrollment", "finance", "reporting")
DEAD_LETTER_TOPICS = tuple(dead_letter_topic(c) for c in CONSUMERS)
ALL_TOPICS = EVENT_TOPICS + DEAD_LETTER_TOPICS
DEFAULT_PARTITIONS = 6
