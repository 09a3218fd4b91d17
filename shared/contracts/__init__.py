"""The public, versioned event contract (see the catalogue in README.md)."""

from . import enrollment, finance, scheduling
from .base import EventCatalogue, IntegrationEvent, Money, catalogue
from .topics import ALL_TOPICS, DEAD_LETTER_TOPICS, EVENT_TOPICS, dead_letter_topic

__all__ = [
    "ALL_TOPICS",
    "DEAD_LETTER_TOPICS",
    "EVENT_TOPICS",
    "EventCatalogue",
    "IntegrationEvent",
    "Money",
    "catalogue",
    "dead_letter_topic",
    "enrollment",
    "finance",
    "scheduling",
]
