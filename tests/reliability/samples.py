"""One valid `data` per consumed topic, for a given customer — the base the fuzzer mutates."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contracts.topics import (
    BALANCE_CHANGED,
    COMPLAINT_CALLBACK_DUE,
    COMPLAINT_FILED,
    COMPLAINT_UPDATED,
    CUSTOMER_ACTIVITY,
    CUSTOMER_UPDATED,
    PROFILE_CALLBACK_DUE,
    PROFILE_CHANGED,
    SLA_BREACHED,
    SLA_WARNING,
    TIER_CHANGED,
)

# Which fields of each payload are money, datetimes and enums (what the fuzzer aims at).
MONEY = {"balance", "delta", "amount_involved", "total_balance"}
DATETIMES = {"booked_at", "received_at", "at", "onboarded_at", "evaluated_at", "due_at"}
ENUMS = {
    "currency", "channel", "category", "activity", "language", "preferred_channel", "tier",
    "previous_tier", "direction", "maintenance_team", "status", "severity", "clock", "reason",
    "basis",
}  # fmt: skip


def sample(topic: str, customer_id: str) -> dict[str, Any]:
    """A `data` object the consumers of `topic` accept."""
    now = datetime.now(UTC)
    ref = uuid.uuid4().hex[:12]
    complaint = {
        "complaint_id": f"CMP-{ref}",
        "customer_id": customer_id,
        "severity": "normal",
        "owner_id": "E001",
        "handler_id": None,
        "department": "retail",
    }
    samples: dict[str, dict[str, Any]] = {
        BALANCE_CHANGED: {
            "customer_id": customer_id, "account_id": f"{customer_id}-1", "currency": "CNY",
            "balance": "60000.00", "delta": "100.00", "txn_id": f"T-{ref}", "account_seq": 1,
            "booked_at": now.isoformat(),
        },
        COMPLAINT_FILED: {
            "complaint_ref": f"FZ-{ref}", "customer_id": customer_id, "channel": "branch",
            "category": "service_attitude", "description": "fuzz", "amount_involved": "10.00",
            "received_by": "E001", "branch_id": "B001", "received_at": now.isoformat(),
        },
        CUSTOMER_ACTIVITY: {
            "customer_id": customer_id, "activity": "product_view", "product_type": "wealth",
            "product_id": "WM-1", "at": now.isoformat(),
        },
        CUSTOMER_UPDATED: {
            "customer_id": customer_id, "name": "Fuzz", "mobile": "+8613800138000",
            "language": "en", "preferred_channel": "sms",
            "consents": {"service": True, "marketing": False}, "onboarded_at": now.isoformat(),
        },
        TIER_CHANGED: {
            "customer_id": customer_id, "previous_tier": None, "tier": "potential",
            "direction": "initial", "total_balance": "60000.00", "basis": "balance",
            "maintenance_team": "customer_manager", "evaluated_at": now.isoformat(),
        },
        COMPLAINT_UPDATED: complaint | {
            "complaint_ref": f"FZ-{ref}", "status": "received", "category": "service_attitude",
            "change": "filed", "received_at": now.isoformat(),
        },
        SLA_WARNING: complaint | {
            "clock": "response", "due_at": (now + timedelta(hours=1)).isoformat(),
        },
        SLA_BREACHED: complaint | {
            "clock": "response", "due_at": now.isoformat(), "escalation_level": 1,
            "overdue_by_seconds": 60,
        },
        COMPLAINT_CALLBACK_DUE: {
            "customer_id": customer_id, "reason": "complaint_followup",
            "complaint_id": f"CMP-{ref}", "sequence": 1, "assignee_id": "E001",
            "due_at": now.isoformat(),
        },
        PROFILE_CHANGED: {
            "customer_id": customer_id, "name": "Fuzz", "mobile": "+8613800138000",
            "language": "en", "preferred_channel": "sms",
            "consents": {"service": True, "marketing": False},
        },
        PROFILE_CALLBACK_DUE: {
            "customer_id": customer_id, "reason": "transaction_decline", "evidence": {"n": 1},
            "assignee_id": "E001", "due_at": now.isoformat(),
        },
    }  # fmt: skip
    return samples[topic]
