"""Transactional outbox: events are written with the state change, published later."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bulk import APPEND_INLINE_ROWS, Upsert, Write, bulk_copy, bulk_writes, json_text
from shared.contracts import Contract, Envelope, encode_envelope, event_headers, timestamp_json
from shared.contracts.topics import TOPICS
from shared.ids import new_id
from shared.tables import outbox


@dataclass(frozen=True)
class OutgoingMessage:
    """One Kafka record as it will be produced."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


class Outbox:
    """Collects a transaction's outgoing messages and writes them at its commit: a few in
    the commit's one statement, more in one COPY."""

    def __init__(self, session: AsyncSession, *, producer: str, now: datetime) -> None:
        self._session = session
        self._producer = producer
        self._now = now
        self._occurred_at: orjson.Fragment | None = None  # `now` as JSON, at the first emit
        self._pending: list[OutgoingMessage] = []
        self.written = 0  # rows flushed into the table

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
        headers = event_headers(spec.event_type, event_id)
        self.add(OutgoingMessage(topic, key.encode(), value, headers))
        return event_id

    def add(self, message: OutgoingMessage) -> None:
        """Queue a raw message (dead letters keep the original value untouched)."""
        self._pending.append(message)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self, writes: Sequence[Write] = ()) -> None:
        """Write every queued message into the outbox table, with `writes` (the
        transaction's deferred writes): a few messages in the same statement, one round
        trip in all; more than `APPEND_INLINE_ROWS` by COPY after it."""
        rows = [
            {"topic": m.topic, "key": m.key, "value": m.value, "headers": json_text(m.headers)}
            for m in self._pending
        ]
        self._pending = []
        if len(rows) > APPEND_INLINE_ROWS:
            await bulk_writes(self._session, writes)
            await bulk_copy(self._session, outbox, rows)
        else:
            await bulk_writes(self._session, [*writes, Upsert(outbox, rows)])
        self.written += len(rows)
