"""Topic names and what travels on each: the one registry of the event contracts."""

from __future__ import annotations

from dataclasses import dataclass

from shared.contracts import events as ev
from shared.contracts.types import Contract

BALANCE_CHANGED = "core.balance-changed.v1"
COMPLAINT_FILED = "channels.complaint-filed.v1"
CUSTOMER_ACTIVITY = "channels.customer-activity.v1"
CUSTOMER_UPDATED = "crm.customer-updated.v1"
TIER_CHANGED = "tiering.tier-changed.v1"
COMPLAINT_UPDATED = "complaints.complaint-updated.v1"
SLA_WARNING = "complaints.sla-warning.v1"
SLA_BREACHED = "complaints.sla-breached.v1"
COMPLAINT_CALLBACK_DUE = "complaints.callback-due.v1"
PROFILE_CHANGED = "profile.profile-changed.v1"
PROFILE_CALLBACK_DUE = "profile.callback-due.v1"
NOTIFICATION_STATUS = "notifications.notification-status.v1"
OPS_ALERTS = "ops.alerts.v1"

SERVICES = ("tiering", "complaints", "notifications", "profile")


def dead_letter_topic(service: str) -> str:
    """The dead-letter topic a service writes bad input to."""
    return f"{service}.dead-letter.v1"


@dataclass(frozen=True)
class Topic:
    """One topic: its name, its event type, its payload model and who publishes it."""

    name: str
    event_type: str
    payload: type[Contract]
    producer: str
    summary: str


TOPICS: dict[str, Topic] = {
    t.name: t
    for t in (
        Topic(
            BALANCE_CHANGED,
            "BalanceChanged",
            ev.BalanceChanged,
            "core-banking",
            "A posting changed a deposit account's balance.",
        ),
        Topic(
            COMPLAINT_FILED,
            "ComplaintFiled",
            ev.ComplaintFiled,
            "channels",
            "A channel received a complaint.",
        ),
        Topic(
            CUSTOMER_ACTIVITY,
            "CustomerActivity",
            ev.CustomerActivity,
            "channels",
            "A customer logged in, viewed or bought a product.",
        ),
        Topic(
            CUSTOMER_UPDATED,
            "CustomerUpdated",
            ev.CustomerUpdated,
            "crm",
            "CRM changed a customer's record (partial update).",
        ),
        Topic(
            TIER_CHANGED,
            "TierChanged",
            ev.TierChanged,
            "tiering",
            "A customer's deposit tier changed.",
        ),
        Topic(
            COMPLAINT_UPDATED,
            "ComplaintUpdated",
            ev.ComplaintUpdated,
            "complaints",
            "Snapshot of a complaint after each change.",
        ),
        Topic(
            SLA_WARNING,
            "SlaWarning",
            ev.SlaWarning,
            "complaints",
            "A complaint's SLA deadline is near.",
        ),
        Topic(
            SLA_BREACHED,
            "SlaBreached",
            ev.SlaBreached,
            "complaints",
            "A complaint's SLA deadline passed.",
        ),
        Topic(
            COMPLAINT_CALLBACK_DUE,
            "CallbackDue",
            ev.ComplaintCallbackDue,
            "complaints",
            "A post-resolution callback is due.",
        ),
        Topic(
            PROFILE_CHANGED,
            "ProfileChanged",
            ev.ProfileChanged,
            "profile",
            "A customer's contact/preference snapshot changed.",
        ),
        Topic(
            PROFILE_CALLBACK_DUE,
            "CallbackDue",
            ev.ProfileCallbackDue,
            "profile",
            "An early-warning rule asks for a callback.",
        ),
        Topic(
            NOTIFICATION_STATUS,
            "NotificationStatus",
            ev.NotificationStatus,
            "notifications",
            "What happened to one notification.",
        ),
        Topic(OPS_ALERTS, "OpsAlert", ev.OpsAlert, "every service", "Alerts for the ops team."),
    )
}
