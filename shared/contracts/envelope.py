"""The envelope every message value travels in, and its (de)serialisation."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from functools import cache
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.contracts.topics import TOPICS
from shared.contracts.types import Contract, Timestamp
from shared.ids import new_uuid

P = TypeVar("P", bound=Contract)


class Envelope(BaseModel, Generic[P]):
    """Metadata plus a typed payload; the message key is the customer id."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: uuid.UUID = Field(description="Unique per event; consumers de-duplicate on it")
    event_type: str = Field(examples=["BalanceChanged"])
    schema_version: int = Field(default=1, ge=1)
    occurred_at: Timestamp
    producer: str = Field(min_length=1, examples=["core-banking"])
    correlation_id: str | None = None
    causation_id: str | None = Field(
        default=None, description="event_id of the event that caused this one"
    )
    data: P


class BadEvent(ValueError):
    """A message that can never be processed: it goes to the dead-letter topic."""

    def __init__(self, reason: str, error_type: str = "invalid_event") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_type = error_type


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each field that broke and the value that broke it."""
    parts = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"]) or "<root>"
        value = err.get("input")
        shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
        if len(shown) > 80:
            shown = shown[:77] + "..."
        parts.append(f"{field}: {err['msg']} (got {shown})")
    return "; ".join(parts)


@cache
def envelope_model(payload: type[Contract]) -> type[Envelope[Any]]:
    """The parametrised envelope class of a payload (built once: pydantic makes it slowly)."""
    return Envelope[payload]  # type: ignore[valid-type]


def parse_event(topic: str, value: bytes | None) -> Envelope[Any]:
    """Decode and validate one message value for `topic`, or raise BadEvent saying why."""
    spec = TOPICS.get(topic)
    if spec is None:
        raise BadEvent(f"no contract for topic {topic!r}", "unknown_topic")
    if value is None:
        raise BadEvent("message has no value", "not_json")
    try:
        event = envelope_model(spec.payload).model_validate_json(value)
    except ValidationError as exc:
        raise _explain(exc, value) from None
    if event.event_type != spec.event_type:
        raise BadEvent(
            f"event_type: expected {spec.event_type!r} on {topic} (got {event.event_type!r})",
            "invalid_envelope",
        )
    return event


def _explain(exc: ValidationError, value: bytes) -> BadEvent:
    """Why a value was refused, in words that name the field and the value."""
    try:
        raw = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return BadEvent(f"value is not UTF-8 JSON: {err}", "not_json")
    if not isinstance(raw, dict):
        return BadEvent("value is not a JSON object", "invalid_envelope")
    return BadEvent(describe_validation_error(exc), "schema_invalid")


def envelope(
    data: Contract,
    *,
    event_type: str,
    producer: str,
    occurred_at: datetime,
    causation_id: str | None = None,
    correlation_id: str | None = None,
) -> Envelope[Any]:
    """Wrap a payload in a fresh envelope with a new event id."""
    if occurred_at.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    # The payload is a validated model already: construct without validating it again.
    return envelope_model(type(data)).model_construct(
        event_id=new_uuid(),
        schema_version=1,
        event_type=event_type,
        occurred_at=occurred_at,
        producer=producer,
        causation_id=causation_id,
        correlation_id=correlation_id,
        data=data,
    )


_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Timestamp)


def timestamp_json(at: datetime) -> orjson.Fragment:
    """An aware timestamp in the envelope's JSON form, to encode many envelopes with."""
    if at.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    return orjson.Fragment(_TIMESTAMP.dump_json(at))


def encode_envelope(
    data: Contract,
    *,
    event_id: str,
    event_type: str,
    producer: str,
    occurred_at: orjson.Fragment,
    causation_id: str | None = None,
    correlation_id: str | None = None,
) -> bytes:
    """The wire form of a new envelope: byte for byte what `Envelope.model_dump_json()`
    gives, without building the envelope model (the outbox's hot path, three events per
    SLA breach: 8.6 µs per event instead of 10.7)."""
    return orjson.dumps(
        {
            "event_id": event_id,
            "event_type": event_type,
            "schema_version": 1,
            "occurred_at": occurred_at,
            "producer": producer,
            "correlation_id": correlation_id,
            "causation_id": causation_id,
            "data": orjson.Fragment(data.__pydantic_serializer__.to_json(data)),
        }
    )


def event_headers(event_type: str, event_id: str, schema_version: int = 1) -> list[tuple[str, str]]:
    """Kafka headers that repeat the envelope's identity (as text; encoded when produced)."""
    return [
        ("event_type", event_type),
        ("event_id", event_id),
        ("schema_version", str(schema_version)),
    ]
