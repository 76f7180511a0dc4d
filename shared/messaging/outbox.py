"""Transactional outbox: events are written with the state change, published later."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from shared.bulk import json_text
from shared.contracts import Contract, Envelope, encode_envelope, event_headers, timestamp_json
from shared.contracts.topics import TOPICS
from shared.ids import new_id

# The most an event's value may hold. Apache Kafka refuses a record batch over its
# `message.max.bytes` (1,048,588 by default) for good, and the relay, which publishes in
# order, would stop at it; this leaves room for the key, the headers and the batch's own.
MAX_EVENT_BYTES = 1_000_000


class EventTooLarge(ValueError):
    """An event outgrew what a record may hold: its transaction fails, so the consumer
    dead-letters the event that caused it instead of the relay meeting it."""


@dataclass(frozen=True)
class OutgoingMessage:
    """One Kafka record as it will be produced."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


class Outbox:
    """Collects a transaction's outgoing messages; its commit writes them (`Tx.flush`)."""

    def __init__(self, *, producer: str, now: datetime) -> None:
        self._producer = producer
        self._now = now
        self._occurred_at: orjson.Fragment | None = None  # `now` as JSON, at the first emit
        self._pending: list[OutgoingMessage] = []

    def emit(
        self,
        topic: str,
        data: Contract,
        *,
        key: str,
        causation: Envelope[Any] | None = None,
    ) -> str:
        """Queue an event on `topic`; it is published only if the transaction commits.
        Returns the new event's id."""
        spec = TOPICS[topic]
        if not isinstance(data, spec.payload):
            raise TypeError(f"{topic} carries {spec.payload.__name__}, not {type(data).__name__}")
        if self._occurred_at is None:
            self._occurred_at = timestamp_json(self._now)
        event_id = new_id()
        value = encode_envelope(
            data,
            event_id=event_id,
            event_type=spec.event_type,
            producer=self._producer,
            occurred_at=self._occurred_at,
            causation_id=str(causation.event_id) if causation else None,
            correlation_id=causation.correlation_id if causation else None,
        )
        if len(value) > MAX_EVENT_BYTES:
            raise EventTooLarge(
                f"{topic}: the event is {len(value):,} bytes, over {MAX_EVENT_BYTES:,}"
            )
        headers = event_headers(spec.event_type, event_id)
        self.add(OutgoingMessage(topic, key.encode(), value, headers))
        return event_id

    def add(self, message: OutgoingMessage) -> None:
        """Queue a raw message (dead letters keep the original value untouched)."""
        self._pending.append(message)

    def take_rows(self) -> list[dict[str, Any]]:
        """The queued messages as outbox rows, for the commit to write (`Tx.flush`); the
        queue is left empty."""
        rows = [
            {"topic": m.topic, "key": m.key, "value": m.value, "headers": json_text(m.headers)}
            for m in self._pending
        ]
        self._pending = []
        return rows
