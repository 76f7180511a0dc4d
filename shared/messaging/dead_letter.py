"""Dead letters: a bad message is copied untouched to `<service>.dead-letter.v1` with why."""

from __future__ import annotations

import json
from datetime import datetime

from aiokafka.structs import ConsumerRecord

from shared.contracts import dead_letter_topic
from shared.contracts.events import OpsAlert
from shared.contracts.topics import OPS_ALERTS
from shared.messaging.outbox import OutgoingMessage
from shared.unit_of_work import Tx

MAX_REASON = 2000


def dedupe_id(record: ConsumerRecord[bytes, bytes]) -> str:
    """The event_id when one can be read, else the record's position (stable on replay)."""
    try:
        event_id = json.loads(record.value or b"").get("event_id")
    except (ValueError, AttributeError):
        event_id = None
    if isinstance(event_id, str) and 0 < len(event_id) <= 100:
        return event_id
    return f"{record.topic}:{record.partition}:{record.offset}"


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
    reason = reason[:MAX_REASON]
    headers = [
        ("dlq.original_topic", record.topic),
        ("dlq.partition", str(record.partition)),
        ("dlq.offset", str(record.offset)),
        ("dlq.error_type", error_type),
        ("dlq.error", reason),
        ("dlq.consumer", consumer),
        ("dlq.at", at.isoformat()),
    ]
    tx.outbox.add(
        OutgoingMessage(dead_letter_topic(service), record.key, record.value or b"", headers)
    )
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
