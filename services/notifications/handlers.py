"""Events → recorded messages: the consumer's batch handler, and status/alert helpers.

The consumer only updates the recipient replica, records messages as `queued` and
schedules a `deliver` timer, all in its own transaction; providers are called later by
the timer worker (services/notifications/delivery.py), so a slow or failing provider never
holds up consumption.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from services.notifications import store
from services.notifications.metrics import NOTIFICATIONS
from services.notifications.routing import (
    Escalation,
    Intent,
    for_callback,
    for_complaint_updated,
    for_sla,
    for_tier_changed,
)
from shared.contracts import Envelope
from shared.contracts.events import (
    ComplaintCallbackDue,
    ComplaintUpdated,
    NotificationStatus,
    OpsAlert,
    ProfileCallbackDue,
    ProfileChanged,
    Recipient,
    SlaBreached,
    SlaWarning,
    TierChanged,
)
from shared.contracts.topics import NOTIFICATION_STATUS, OPS_ALERTS
from shared.ids import new_id
from shared.unit_of_work import Tx

log = logging.getLogger(__name__)

DELIVER = "deliver"
SERVICE = "notifications"


def emit_status(
    tx: Tx,
    row: Any,
    status: str,
    reason: str | None,
    channel: Any = None,
    causation: Envelope[Any] | None = None,
) -> None:
    """Tell the bus what happened to one notification."""
    NOTIFICATIONS.labels(channel or "none", status).inc()
    tx.emit(
        NOTIFICATION_STATUS,
        NotificationStatus(
            notification_id=row.notification_id,
            recipient=Recipient(kind=row.recipient_kind, id=row.recipient_id),
            channel=channel,
            template=row.template,
            status=status,
            reason=reason,
            source_event_id=row.source_event_id,
        ),
        key=row.customer_id,
        causation=causation,
    )


def emit_alert(tx: Tx, kind: str, message: str, severity: str = "warning", **details: Any) -> None:
    tx.emit(
        OPS_ALERTS,
        OpsAlert(
            service=SERVICE,
            severity=severity,
            kind=kind,
            message=message,
            details=details,
        ),
        key=SERVICE,
    )


def delivery_key(notification_id: str, seq: int) -> str:
    """The timer of one delivery round (seq): a retry schedules the next round's own."""
    return f"{notification_id}:{seq}"


# --- consumer: events → queued notifications ---------------------------------------------


def _customer_row(event: Envelope[Any]) -> dict[str, Any]:
    data: ProfileChanged = event.data
    return {
        "customer_id": data.customer_id,
        "name": data.name,
        "mobile": data.mobile,
        "wechat_openid": data.wechat_openid,
        "language": data.language,
        "preferred_channel": data.preferred_channel,
        "service_consent": data.consents.service is not False,
        "marketing_consent": data.consents.marketing is True,
        "quiet_start": data.quiet_hours.start,
        "quiet_end": data.quiet_hours.end,
        "tier": data.tier,
        "maintenance_team": data.maintenance_team,
        "relationship_manager_id": data.relationship_manager_id,
        "branch_id": data.branch_id,
        "as_of": event.occurred_at,
    }


async def load_escalation(tx: Tx, breaches: Sequence[SlaBreached]) -> Escalation:
    """Department heads and branch presidents, and the branches of the customers concerned."""
    if not breaches:
        return Escalation()
    heads: dict[str, list[str]] = {}
    presidents: dict[str, list[str]] = {}
    for person in await store.staff_with_roles(tx.session, ["department_head", "branch_president"]):
        if "department_head" in person.roles and person.department:
            heads.setdefault(person.department, []).append(person.employee_id)
        if "branch_president" in person.roles:
            presidents.setdefault(person.branch_id or "", []).append(person.employee_id)
    for ids in (*heads.values(), *presidents.values()):
        ids.sort()
    customers = await store.customers_by_id(tx.session, (b.customer_id for b in breaches))
    branches = {cid: row.branch_id for cid, row in customers.items()}
    return Escalation(heads, presidents, branches)


def intents_for(data: Any, escalation: Escalation) -> list[Intent]:
    """The messages one event calls for."""
    if isinstance(data, TierChanged):
        return for_tier_changed(data)
    if isinstance(data, ComplaintUpdated):
        return for_complaint_updated(data)
    if isinstance(data, SlaWarning):  # SlaBreached too
        return for_sla(data, escalation)
    if isinstance(data, ComplaintCallbackDue | ProfileCallbackDue):
        return for_callback(data)
    return []


async def record_notifications(tx: Tx, events: list[Envelope[Any]]) -> None:
    """Batch handler: update the customer replica, then record and schedule the messages."""
    latest: dict[str, dict[str, Any]] = {}
    for event in events:
        if isinstance(event.data, ProfileChanged):
            row = _customer_row(event)
            if (
                row["customer_id"] not in latest
                or latest[row["customer_id"]]["as_of"] <= row["as_of"]
            ):
                latest[row["customer_id"]] = row
    await store.save_customers(tx.session, list(latest.values()))

    breaches = [e.data for e in events if isinstance(e.data, SlaBreached)]
    escalation = await load_escalation(tx, breaches)
    rows: list[dict[str, Any]] = []
    causes: dict[str, Envelope[Any]] = {}
    for event in events:
        data = event.data
        if (
            isinstance(data, SlaBreached)
            and data.escalation_level == 2
            and escalation.branch_president(data.customer_id, data.branch_id) is None
        ):
            emit_alert(
                tx,
                "missing_escalation_contact",
                f"no branch president on record for complaint {data.complaint_id}",
                complaint_id=data.complaint_id,
            )
        for intent in intents_for(data, escalation):
            causes[str(event.event_id)] = event
            rows.append(
                {
                    "notification_id": new_id(),
                    "source_event_id": str(event.event_id),
                    "source_event_type": event.event_type,
                    "recipient_kind": intent.recipient_kind,
                    "recipient_id": intent.recipient_id,
                    "template": intent.template,
                    "customer_id": intent.customer_id,
                    "urgent": intent.urgent,
                    "variables": intent.variables,
                    "status": "queued",
                    "created_at": tx.now,
                    "updated_at": tx.now,
                }
            )
    inserted = await store.insert_notifications(tx.session, rows)
    for row in inserted:
        emit_status(tx, row, "queued", None, causation=causes[row.source_event_id])
    tx.schedule_at_commit(  # with the commit's statement: nothing here reads them back
        DELIVER,
        [
            (delivery_key(r.notification_id, 0), tx.now, {"notification_id": r.notification_id})
            for r in inserted
        ],
    )
