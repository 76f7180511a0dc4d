"""Dead letters: a bad message is copied untouched (up to 900,000 bytes) to
`<service>.dead-letter.v1` with why."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from aiokafka.structs import ConsumerRecord

from shared.contracts import dead_letter_topic
from shared.contracts.events import OpsAlert
from shared.contracts.topics import OPS_ALERTS
from shared.logs import mask_pii
from shared.messaging.outbox import OutgoingMessage
from shared.unit_of_work import Tx

MAX_REASON = 2000
MAX_COPY = 900_000  # bytes of the original value a dead letter keeps


def dedupe_id(record: ConsumerRecord[bytes, bytes]) -> str:
    """The event_id when it reads as the contract's UUID, else the record's position (stable
    on replay). Not any string: one the inbox cannot store (a NUL, a lone surrogate) failed
    every transaction of its batch, and the partition stopped there."""
    try:
        return str(uuid.UUID(json.loads(record.value or b"")["event_id"]))
    except (ValueError, TypeError, KeyError, AttributeError):
        return f"{record.topic}:{record.partition}:{record.offset}"


def dead_letter_value(value: bytes) -> tuple[bytes, list[tuple[str, str]]]:
    """The value a dead letter carries, and headers saying if it was cut: the original,
    up to MAX_COPY bytes. A copy near Apache Kafka's 1 MB limit went over it with the dlq
    headers; the broker would refuse it for good, and the relay, which publishes in order,
    would stop at it (the embedded broker takes larger records)."""
    if len(value) <= MAX_COPY:
        return value, []
    return value[:MAX_COPY], [("dlq.truncated_from", str(len(value)))]


def dead_letter(
    tx: Tx,
    record: ConsumerRecord[bytes, bytes],
    *,
    service: str,
    consumer: str,
    error_type: str,
    reason: str,
    at: datetime,
) -> None:
    """Queue the original message on the dead-letter topic and an alert for ops."""
    # It may quote the input (the value keeps it): masked, then cut (a number cut first
    # could slip past the pattern).
    reason = mask_pii(reason)[:MAX_REASON]
    headers = [
        ("dlq.original_topic", record.topic),
        ("dlq.partition", str(record.partition)),
        ("dlq.offset", str(record.offset)),
        ("dlq.error_type", error_type),
        ("dlq.error", reason),
        ("dlq.consumer", consumer),
        ("dlq.at", at.isoformat()),
    ]
    value, cut = dead_letter_value(record.value or b"")
    tx.outbox.add(OutgoingMessage(dead_letter_topic(service), record.key, value, headers + cut))
    tx.emit(
        OPS_ALERTS,
        OpsAlert(
            service=service,
            severity="warning",
            kind="dead_letter",
            message=f"{record.topic} message dead-lettered by {consumer}: {error_type}",
            details={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "error_type": error_type,
                "error": reason,
            },
        ),
        key=service,
    )
