"""Contracts: every model round-trips; floats, naive datetimes and missing fields are refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from shared.contracts import (
    BadEvent,
    Envelope,
    encode_envelope,
    envelope,
    parse_event,
    timestamp_json,
)
from shared.contracts import events as ev
from shared.contracts.docs import render
from shared.contracts.topics import BALANCE_CHANGED, TOPICS

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 22, 5, 5, tzinfo=UTC)

SAMPLES: dict[str, ev.Contract] = {
    "core.balance-changed.v1": ev.BalanceChanged(
        customer_id="C1", account_id="A1", currency="CNY", balance=Decimal("50000.00"),
        delta=Decimal("-12.30"), txn_id="T1", account_seq=7, booked_at=NOW,
    ),
    "channels.complaint-filed.v1": ev.ComplaintFiled(
        complaint_ref="R1", customer_id="C1", channel="app", category="fees",
        description="charged twice", amount_involved=Decimal("20"), received_by="E1",
        branch_id="B1", received_at=NOW,
    ),
    "channels.customer-activity.v1": ev.CustomerActivity(
        customer_id="C1", activity="product_view", product_type="wealth", product_id="W1", at=NOW
    ),
    "crm.customer-updated.v1": ev.CustomerUpdated(
        customer_id="C1", mobile="+8613800138000", consents=ev.Consents(marketing=True)
    ),
    "tiering.tier-changed.v1": ev.TierChanged(
        customer_id="C1", previous_tier="ordinary", tier="potential", direction="upgrade",
        total_balance=Decimal("50000.00"), basis="balance", maintenance_team="customer_manager",
        evaluated_at=NOW,
    ),
    "complaints.complaint-updated.v1": ev.ComplaintUpdated(
        complaint_id="K1", complaint_ref="R1", customer_id="C1", status="received",
        severity="major", category="card_fraud", owner_id="E1", department="head_office_risk",
        resolution_due_at=NOW, regulatory_due_at=NOW, change="filed",
    ),
    "complaints.sla-warning.v1": ev.SlaWarning(
        complaint_id="K1", customer_id="C1", severity="urgent", clock="resolution", due_at=NOW,
        owner_id="E1", department="operations",
    ),
    "complaints.sla-breached.v1": ev.SlaBreached(
        complaint_id="K1", customer_id="C1", severity="urgent", clock="resolution", due_at=NOW,
        owner_id="E1", department="operations", escalation_level=2, overdue_by_seconds=3600,
    ),
    "complaints.callback-due.v1": ev.ComplaintCallbackDue(
        customer_id="C1", reason="complaint_followup", complaint_id="K1", sequence=2,
        assignee_id="E1", due_at=NOW,
    ),
    "profile.profile-changed.v1": ev.ProfileChanged(customer_id="C1", mobile="+8613800138000"),
    "profile.callback-due.v1": ev.ProfileCallbackDue(
        customer_id="C1", reason="browsing_without_purchase", evidence={"days": 3},
        assignee_id="E1", due_at=NOW,
    ),
    "notifications.notification-status.v1": ev.NotificationStatus(
        notification_id="N1", recipient=ev.Recipient(kind="customer", id="C1"), channel="sms",
        template="tier_upgrade", status="sent", source_event_id="X",
    ),
    "ops.alerts.v1": ev.OpsAlert(
        service="tiering", severity="warning", kind="dead_letter", message="m"
    ),
}  # fmt: skip


def test_every_topic_has_a_sample():
    assert set(SAMPLES) == set(TOPICS)


@pytest.mark.parametrize("topic", sorted(SAMPLES))
def test_round_trip_through_the_wire_format(topic: str):
    spec = TOPICS[topic]
    sent = envelope(SAMPLES[topic], event_type=spec.event_type, producer="t", occurred_at=NOW)
    received = parse_event(topic, sent.model_dump_json().encode())
    assert received == sent
    assert received.data == SAMPLES[topic]


@pytest.mark.parametrize("topic", sorted(SAMPLES))
@pytest.mark.parametrize(
    "at",
    [NOW, datetime(2026, 11, 22, 13, 5, 7, 250, tzinfo=timezone(timedelta(hours=8)))],
    ids=["utc", "beijing-with-microseconds"],
)
def test_the_outbox_encoding_is_the_envelope_models_json(topic: str, at: datetime):
    spec = TOPICS[topic]
    sent = envelope(
        SAMPLES[topic], event_type=spec.event_type, producer="t", occurred_at=at,
        causation_id="cause-1", correlation_id="投诉-1",
    )  # fmt: skip
    encoded = encode_envelope(
        SAMPLES[topic], event_id=str(sent.event_id), event_type=spec.event_type, producer="t",
        occurred_at=timestamp_json(at), causation_id="cause-1", correlation_id="投诉-1",
    )  # fmt: skip
    assert encoded == sent.model_dump_json().encode()
    assert parse_event(topic, encoded) == sent


def test_the_outbox_encoding_refuses_a_naive_timestamp():
    with pytest.raises(ValueError, match="timezone-aware"):
        timestamp_json(datetime(2026, 11, 22, 13, 5))  # noqa: DTZ001 - naive on purpose


def _balance_event(**data: Any) -> dict[str, Any]:
    base = {
        "customer_id": "C1", "account_id": "A1", "currency": "CNY", "balance": "10.00",
        "delta": "10.00", "txn_id": "T1",
    } | data  # fmt: skip
    return {
        "event_id": "8a0c5a3e-6f0e-4f7e-9a57-3c1f8a2b9d10",
        "event_type": "BalanceChanged",
        "occurred_at": "2026-11-22T13:05:00+08:00",
        "producer": "core-banking",
        "data": {k: v for k, v in base.items() if v is not None},
    }


def _reason(raw: dict[str, Any]) -> str:
    with pytest.raises(BadEvent) as caught:
        parse_event(BALANCE_CHANGED, json.dumps(raw).encode())
    return caught.value.reason


def test_amounts_accept_strings_and_integers():
    event = parse_event(BALANCE_CHANGED, json.dumps(_balance_event(balance=50000)).encode())
    assert event.data.balance == Decimal(50000)
    assert isinstance(event.data.balance, Decimal)


def test_float_amount_is_rejected_naming_the_field():
    assert "data.balance" in _reason(_balance_event(balance=50000.5))
    assert "float" in _reason(_balance_event(balance=50000.5))


def test_naive_datetime_is_rejected_naming_the_field():
    raw = _balance_event() | {"occurred_at": "2026-11-22T13:05:00"}
    assert "occurred_at" in _reason(raw)
    assert "data.booked_at" in _reason(_balance_event(booked_at="2026-11-22T13:05:00"))


def test_an_offset_postgres_cannot_store_is_rejected_naming_the_field():
    """Postgres refuses offsets of 16 hours or more; such an event would fail every
    retry of its batch instead of going straight to the dead-letter topic."""
    assert "occurred_at" in _reason(_balance_event() | {"occurred_at": "2026-11-22T13:05:00-19:23"})
    assert "data.booked_at" in _reason(_balance_event(booked_at="2026-11-22T13:05:00+16:00"))
    for offset in ("+14:00", "-12:00", "+15:59"):
        raw = _balance_event() | {"occurred_at": f"2026-11-22T13:05:00{offset}"}
        assert parse_event(BALANCE_CHANGED, json.dumps(raw).encode()).occurred_at.tzinfo


def test_a_time_outside_1900_to_2999_is_rejected_naming_the_field():
    """Near year 1 or 9999 a time Postgres stored did not read back (asyncpg, in UTC)."""
    for stamp in ("0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-15:00", "1899-12-31T23:59:59Z"):
        assert "data.booked_at" in _reason(_balance_event(booked_at=stamp))
    assert "occurred_at" in _reason(_balance_event() | {"occurred_at": "3000-01-01T00:00:00Z"})
    for stamp in ("1900-01-01T00:00:00Z", "2999-12-31T23:59:59+14:00"):
        parse_event(BALANCE_CHANGED, json.dumps(_balance_event(booked_at=stamp)).encode())


def test_missing_field_is_rejected_naming_the_field():
    assert "data.txn_id: Field required" in _reason(_balance_event(txn_id=None))


def test_garbage_is_a_bad_event():
    with pytest.raises(BadEvent, match="not UTF-8 JSON"):
        parse_event(BALANCE_CHANGED, b"\xff not json")
    with pytest.raises(BadEvent, match="event_type"):
        parse_event(BALANCE_CHANGED, json.dumps(_balance_event() | {"event_type": "X"}).encode())


def test_unknown_extra_fields_are_ignored():
    raw = _balance_event(new_field="from the future")
    assert parse_event(BALANCE_CHANGED, json.dumps(raw).encode()).data.txn_id == "T1"


def test_models_are_frozen():
    with pytest.raises(ValidationError):
        SAMPLES[BALANCE_CHANGED].balance = Decimal(1)  # type: ignore[misc]


def test_an_amount_numeric_18_2_cannot_hold_is_rejected_naming_the_field():
    """DOMAIN.md: amounts have two places; every service stores them as NUMERIC(18, 2)."""
    for amount, problem in (
        ("10.005", "more than two decimal places"),
        ("1E+16", "out of range"),
        ("-10000000000000000", "out of range"),
        (10**16, "out of range"),
    ):
        reason = _reason(_balance_event(balance=amount))
        assert "data.balance" in reason and problem in reason, reason
    for amount in ("9999999999999999.99", "-9999999999999999.99", "10.500", "1E+3", 12):
        parse_event(BALANCE_CHANGED, json.dumps(_balance_event(balance=amount)).encode())


def test_quiet_hours_are_ascii_hh_mm():
    assert ev.QuietHours(start="21:00", end="08:00").start == "21:00"
    for start in ("21:0\uff10", "\uff121:00", "9:00"):
        with pytest.raises(ValidationError):
            ev.QuietHours(start=start, end="08:00")


def test_money_serialises_as_string():
    dumped = json.loads(Envelope[ev.BalanceChanged](**_balance_event()).model_dump_json())
    assert dumped["data"]["balance"] == "10.00"


def test_committed_event_docs_are_current():
    for path, text in render().items():
        assert path.exists(), f"{path} missing: run `make docs`"
        assert path.read_text() == text, f"{path.name} is stale: run `make docs`"
