"""Notification metrics: messages by channel and final status, provider calls by outcome."""

from __future__ import annotations

from prometheus_client import Counter

NOTIFICATIONS = Counter(
    "steward_notifications_total",
    "Notifications by channel and status (queued, sent, failed, suppressed)",
    ["channel", "status"],
)
PROVIDER_CALLS = Counter(
    "steward_notification_provider_calls_total",
    "Provider calls by provider and outcome (delivered, transient, permanent)",
    ["provider", "outcome"],
)
