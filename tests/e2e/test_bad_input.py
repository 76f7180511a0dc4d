"""Flow 5: garbage on every inbound topic is dead-lettered with its reason, ops is alerted,
and every flow still works afterwards."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.contracts.topics import (
    BALANCE_CHANGED,
    COMPLAINT_CALLBACK_DUE,
    COMPLAINT_FILED,
    COMPLAINT_UPDATED,
    CUSTOMER_ACTIVITY,
    CUSTOMER_UPDATED,
    OPS_ALERTS,
    PROFILE_CALLBACK_DUE,
    PROFILE_CHANGED,
    SLA_BREACHED,
    SLA_WARNING,
    TIER_CHANGED,
    dead_letter_topic,
)
from shared.logs import mask_pii
from shared.testing.kafka import header, make_event
from tests.e2e.flows import browsing_flow, complaint_flow, posting, tier_flow
from tests.e2e.support import Record, System, data_of, keyed, new_id

pytestmark = pytest.mark.e2e

# Who consumes each topic (and dead-letters what it cannot read): the bank's inbound topics
# and the services' own events that other services read.
CONSUMERS = {
    BALANCE_CHANGED: ("tiering", "profile"),
    COMPLAINT_FILED: ("complaints",),
    CUSTOMER_ACTIVITY: ("profile",),
    CUSTOMER_UPDATED: ("profile",),
    TIER_CHANGED: ("complaints", "profile", "notifications"),
    COMPLAINT_UPDATED: ("profile", "notifications"),
    SLA_WARNING: ("notifications",),
    SLA_BREACHED: ("notifications",),
    COMPLAINT_CALLBACK_DUE: ("notifications",),
    PROFILE_CHANGED: ("notifications",),
    PROFILE_CALLBACK_DUE: ("notifications",),
}
NAIVE = "2026-05-01T10:00:00"  # no offset: a naive timestamp


@dataclass(frozen=True)
class Garbage:
    """One bad message, what the consumers must say about it, and its own key."""

    topic: str
    what: str
    value: bytes
    error_type: str
    reason: str
    key: str
    rejected_by: tuple[str, ...] = ()

    @property
    def dead_lettered_by(self) -> tuple[str, ...]:
        return self.rejected_by or CONSUMERS[self.topic]


def _valid(topic: str, key: str) -> dict[str, Any]:
    at = datetime.now(UTC).isoformat()
    return {
        BALANCE_CHANGED: posting(key, "A1", "100.00", "100.00", 1),
        COMPLAINT_FILED: {
            "complaint_ref": new_id("BAD"),
            "customer_id": key,
            "channel": "app",
            "category": "fees",
            "description": "x",
            "received_by": "E001",
            "branch_id": "B001",
            "received_at": at,
        },
        CUSTOMER_ACTIVITY: {"customer_id": key, "activity": "login", "at": at},
        CUSTOMER_UPDATED: {"customer_id": key, "name": "Bad Data"},
    }[topic]


def _event(topic: str, key: str, *, drop: str | None = None, **fields: Any) -> bytes:
    data = _valid(topic, key) | fields
    if drop:
        del data[drop]
    return json.dumps(make_event(topic, data)).encode()


# Per topic: a bad amount or value, a missing field, a naive timestamp in the data, and a
# value the contract lets through but the consuming service's rules refuse.
INVALID = "schema_invalid"
SPECIFIC: dict[str, tuple[tuple[Any, ...], ...]] = {
    BALANCE_CHANGED: (
        ("float amount", {"balance": 50000.5}, None, "data.balance", INVALID, None),
        ("third decimal place", {"balance": "10.005"}, None, "data.balance", INVALID, None),
        ("missing field", {}, "currency", "data.currency", INVALID, None),
        ("naive datetime", {"booked_at": NAIVE}, None, "data.booked_at", INVALID, None),
        # Profile counts foreign postings without converting them; tiering cannot.
        (
            "unknown currency",
            {"currency": "XYZ"},
            None,
            "data.currency",
            "unknown_currency",
            ("tiering",),
        ),
        # Applied, it would make the account's later postings without a sequence stale, and
        # stand as the customer's last transaction for good.
        (
            "booked in the future",
            {"booked_at": "2999-01-01T08:00:00+08:00"},
            None,
            "data.booked_at",
            "invalid_field",
            None,
        ),
    ),
    COMPLAINT_FILED: (
        ("float amount", {"amount_involved": 99.5}, None, "data.amount_involved", INVALID, None),
        ("missing field", {}, "category", "data.category", INVALID, None),
        ("naive datetime", {"received_at": NAIVE}, None, "data.received_at", INVALID, None),
        (
            "blank description",
            {"description": "   "},
            None,
            "data.description",
            "invalid_complaint",
            None,
        ),
        (
            "negative amount",
            {"amount_involved": "-5.00"},
            None,
            "data.amount_involved",
            "invalid_complaint",
            None,
        ),
        (
            "received in the future",
            {"received_at": "2999-01-01T08:00:00+08:00"},
            None,
            "data.received_at",
            "invalid_complaint",
            None,
        ),
    ),
    CUSTOMER_ACTIVITY: (
        ("unknown activity", {"activity": "dance"}, None, "data.activity", INVALID, None),
        ("missing field", {}, "at", "data.at", INVALID, None),
        ("naive datetime", {"at": NAIVE}, None, "data.at", INVALID, None),
        ("product code too long", {"product_id": "W" * 65}, None, "data.product_id", INVALID, None),
        # It would stand as the customer's last activity and keep the inactivity rules quiet.
        (
            "in the future",
            {"at": "2999-01-01T08:00:00+08:00"},
            None,
            "data.at",
            "invalid_field",
            None,
        ),
    ),
    CUSTOMER_UPDATED: (
        ("number for a mobile", {"mobile": 13800138000.5}, None, "data.mobile", INVALID, None),
        ("missing field", {}, "customer_id", "data.customer_id", INVALID, None),
        ("naive datetime", {"onboarded_at": NAIVE}, None, "data.onboarded_at", INVALID, None),
        ("not a mobile number", {"mobile": "12345"}, None, "data.mobile", "invalid_field", None),
        # The reason quotes the input: masked in the header and the alert (the value keeps it).
        ("mobile as a number", {"mobile": 13812345678}, None, "data.mobile", INVALID, None),
        # Stored and passed on in ProfileChanged: unbounded, it could outgrow what the broker
        # takes and stop profile's outbox relay.
        ("name too long", {"name": "名" * 201}, None, "data.name", INVALID, None),
    ),
}


def garbage() -> list[Garbage]:
    """Every kind of bad input, on every inbound topic, each under a key of its own."""
    found = []
    for topic in CONSUMERS:
        key = new_id("BAD")
        found.append(Garbage(topic, "not JSON", b"\x00{not json", "not_json", "JSON", key))
        if topic not in SPECIFIC:  # a service's event: a payload that breaks its contract
            key = new_id("BAD")
            broken = json.dumps(make_event(topic, {"customer_id": 42})).encode()
            found.append(Garbage(topic, "number id", broken, INVALID, "data.customer_id", key))
            continue
        key = new_id("BAD")
        wrong_type = make_event(topic, _valid(topic, key), event_type="SomethingElse")
        found.append(
            Garbage(
                topic,
                "wrong event_type",
                json.dumps(wrong_type).encode(),
                "invalid_envelope",
                "event_type",
                key,
            )
        )
        key = new_id("BAD")
        # An id the inbox cannot store: kept by position instead (it stopped the partition).
        nul_id = make_event(topic, _valid(topic, key), event_id="evt\u0000-1")
        found.append(
            Garbage(topic, "NUL in event_id", json.dumps(nul_id).encode(), INVALID, "event_id", key)
        )
        key = new_id("BAD")
        naive_envelope = make_event(topic, _valid(topic, key), occurred_at=NAIVE)
        found.append(
            Garbage(
                topic,
                "naive occurred_at",
                json.dumps(naive_envelope).encode(),
                "schema_invalid",
                "occurred_at",
                key,
            )
        )
        for what, fields, drop, reason, error_type, rejected_by in SPECIFIC[topic]:
            key = new_id("BAD")
            value = _event(topic, key, drop=drop, **fields)
            found.append(Garbage(topic, what, value, error_type, reason, key, rejected_by or ()))
    return found


def dead_letters_of(system: System, g: Garbage, service: str) -> list[Record]:
    return system.topics[dead_letter_topic(service)].matching(keyed(g.key))


async def test_garbage_is_dead_lettered_with_reasons_and_the_flows_still_work(system: System):
    wiring = {
        topic: tuple(
            name
            for name, svc in system.stack.services.items()
            if any(topic in c.subscription.topics for c in svc.runtime.consumers)
        )
        for topic in CONSUMERS
    }
    assert wiring == CONSUMERS
    bad = garbage()
    sent = [await system.send(g.topic, g.value, g.key) for g in bad]
    await system.stack.consumed(sent)

    for g, where in zip(bad, sent, strict=True):
        for service in g.dead_lettered_by:
            [letter] = await system.topics[dead_letter_topic(service)].wait_for(keyed(g.key))
            context = (g.topic, g.what, service, dict(letter.headers))
            assert letter.value == g.value, context
            assert header(letter, "dlq.original_topic") == g.topic, context
            assert header(letter, "dlq.partition") == str(where.partition), context
            assert header(letter, "dlq.offset") == str(where.offset), context
            assert header(letter, "dlq.error_type") == g.error_type, context
            assert g.reason in (header(letter, "dlq.error") or ""), context
            assert mask_pii(header(letter, "dlq.error") or "") == header(letter, "dlq.error")
            assert (header(letter, "dlq.consumer") or "").startswith(f"{service}."), context

            def alert_for(
                r: Record, g: Garbage = g, service: str = service, where: Any = where
            ) -> bool:
                data = data_of(r)
                details = data.get("details") or {}
                return (
                    data.get("service") == service
                    and data.get("kind") == "dead_letter"
                    and details.get("topic") == g.topic
                    and details.get("partition") == where.partition
                    and details.get("offset") == where.offset
                )

            [alert] = await system.topics[OPS_ALERTS].wait_for(alert_for)
            assert data_of(alert)["details"]["error_type"] == g.error_type, context
            assert g.reason in data_of(alert)["details"]["error"], context
            assert mask_pii(json.dumps(data_of(alert))) == json.dumps(data_of(alert)), context

    # Each bad message was dead-lettered once by each of its consumers, and by no one else.
    await system.stack.drained()
    for service in ("tiering", "complaints", "profile", "notifications"):
        await system.topics[dead_letter_topic(service)].caught_up()
    for g in bad:
        for service in ("tiering", "complaints", "profile", "notifications"):
            expected = 1 if service in g.dead_lettered_by else 0
            assert len(dead_letters_of(system, g, service)) == expected, (g.what, service)

    # Every consumer is still up and every flow still works, start to finish.
    for name, svc in system.stack.services.items():
        ready = await svc.http.get("/readyz")
        assert ready.status_code == 200, (name, ready.text)
    await asyncio.gather(tier_flow(system, "sms"), browsing_flow(system))
    await complaint_flow(system)
