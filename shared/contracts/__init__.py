"""Event contracts: envelope, payload models and topic registry (see docs/events.md)."""

from shared.contracts.envelope import BadEvent, Envelope, envelope, headers_for, parse_event
from shared.contracts.topics import TOPICS, Topic, dead_letter_topic
from shared.contracts.types import Contract, Money, Timestamp

__all__ = [
    "TOPICS",
    "BadEvent",
    "Contract",
    "Envelope",
    "Money",
    "Timestamp",
    "Topic",
    "dead_letter_topic",
    "envelope",
    "headers_for",
    "parse_event",
]
