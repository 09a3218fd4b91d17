"""The public, versioned event contract (see the catalogue in README.md)."""

from . import enrollment, finance, legacy, requests, scheduling
from .base import EventCatalogue, IntegrationEvent, IntegrationRequest, Money, catalogue
from .topics import ALL_TOPICS, DEAD_LETTER_TOPICS, EVENT_TOPICS, REQUEST_TOPICS, dead_letter_topic

__all__ = [
    "ALL_TOPICS",
    "DEAD_LETTER_TOPICS",
    "EVENT_TOPICS",
    "EventCatalogue",
    "IntegrationEvent",
    "IntegrationRequest",
    "REQUEST_TOPICS",
    "Money",
    "catalogue",
    "dead_letter_topic",
    "enrollment",
    "finance",
    "legacy",
    "requests",
    "scheduling",
]
