"""Event contracts: envelope, payload models and topic registry (see docs/events.md)."""

from shared.contracts.envelope import (
    BadEvent,
    Envelope,
    encode_envelope,
    envelope,
    event_headers,
    parse_event,
    timestamp_json,
)
from shared.contracts.topics import TOPICS, Topic, dead_letter_topic
from shared.contracts.types import Contract, Money, MoneyTotal, Timestamp

__all__ = [
    "TOPICS",
    "BadEvent",
    "Contract",
    "Envelope",
    "Money",
    "MoneyTotal",
    "Timestamp",
    "Topic",
    "dead_letter_topic",
    "encode_envelope",
    "envelope",
    "event_headers",
    "parse_event",
    "timestamp_json",
]
