"""Which messages an event calls for: recipients, template and variables (pure, no I/O).

Escalation contacts are staff roles: level 1 (department head) is the staff member with
role `department_head` in the complaint's department, or that department's duty contact
when none is on record; level 2 (branch president) is the staff member with role
`branch_president` of the branch that received the complaint, else of the customer's
branch, else the first branch president on record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.notifications.domain import RecipientKind
from shared.contracts.events import (
    ComplaintCallbackDue,
    ComplaintUpdated,
    ProfileCallbackDue,
    SlaBreached,
    SlaWarning,
    TierChanged,
)

FILED_CHANGES = frozenset({"filed", "received", "file"})
RESOLVED_CHANGES = frozenset({"resolved", "resolve"})


@dataclass(frozen=True)
class Intent:
    """One message to record: to whom, which template, about which customer, with what."""

    recipient_kind: RecipientKind
    recipient_id: str
    template: str
    customer_id: str
    urgent: bool
    variables: dict[str, Any]


@dataclass(frozen=True)
class Escalation:
    """Who the escalation roles are, as the staff replica knows them."""

    department_heads: Mapping[str, Sequence[str]] = field(default_factory=dict)
    branch_presidents: Mapping[str, Sequence[str]] = field(default_factory=dict)
    customer_branch: Mapping[str, str | None] = field(default_factory=dict)

    def department_head(self, department: str) -> tuple[RecipientKind, str]:
        heads = self.department_heads.get(department) or ()
        return ("employee", heads[0]) if heads else ("department", department)

    def branch_president(
        self, customer_id: str, branch_id: str | None = None
    ) -> tuple[RecipientKind, str] | None:
        """The president of the branch that received the complaint, else of the customer's
        branch, else the first on record (None: nobody has the role)."""
        for branch in (branch_id, self.customer_branch.get(customer_id)):
            chosen = self.branch_presidents.get(branch or "")
            if chosen:
                return ("employee", chosen[0])
        everyone = sorted(e for ids in self.branch_presidents.values() for e in ids)
        return ("employee", everyone[0]) if everyone else None


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


def _vars(**values: Any) -> dict[str, Any]:
    return {name: _json(value) for name, value in values.items()}


def for_tier_changed(data: TierChanged) -> list[Intent]:
    """Upgrade → congratulate the customer; any change → tell the new maintenance team."""
    intents = []
    if data.direction == "upgrade":
        intents.append(
            Intent(
                "customer",
                data.customer_id,
                "tier_upgrade_customer",
                data.customer_id,
                urgent=False,
                variables=_vars(
                    tier=data.tier,
                    previous_tier=data.previous_tier,
                    maintenance_team=data.maintenance_team,
                ),
            )
        )
    intents.append(
        Intent(
            "department",
            data.maintenance_team,
            "tier_customer_assigned",
            data.customer_id,
            urgent=True,
            variables=_vars(
                customer_id=data.customer_id,
                tier=data.tier,
                previous_tier=data.previous_tier,
                direction=data.direction,
                total_balance=data.total_balance,
            ),
        )
    )
    return intents


def for_complaint_updated(data: ComplaintUpdated) -> list[Intent]:
    """Filed → acknowledgement with ticket and deadline; resolved → tell the customer."""
    if data.change in FILED_CHANGES:
        template = "complaint_received_customer"
    elif data.change in RESOLVED_CHANGES and data.status == "resolved":
        template = "complaint_resolved_customer"
    else:
        return []
    variables = _vars(
        ticket=data.complaint_id,
        category=data.category,
        severity=data.severity,
        resolution_due_at=data.resolution_due_at,
    )
    if template == "complaint_resolved_customer":
        variables = {k: variables[k] for k in ("ticket", "category")}
    return [Intent("customer", data.customer_id, template, data.customer_id, False, variables)]


def for_sla(data: SlaWarning, escalation: Escalation) -> list[Intent]:
    """Warning → owner and handler; breach → also the escalation contact of its level."""
    variables = _vars(
        complaint_id=data.complaint_id,
        customer_id=data.customer_id,
        severity=data.severity,
        clock=data.clock,
        due_at=data.due_at,
        department=data.department,
    )
    recipients: list[tuple[RecipientKind, str]] = [(data.owner_kind or "employee", data.owner_id)]
    if data.handler_id:
        recipients.append(("employee", data.handler_id))
    template = "sla_warning_staff"
    if isinstance(data, SlaBreached):
        template = "sla_breached_staff"
        variables |= _vars(
            escalation_level=data.escalation_level, overdue=_duration(data.overdue_by_seconds)
        )
        contact = (
            escalation.department_head(data.department)
            if data.escalation_level == 1
            else escalation.branch_president(data.customer_id, data.branch_id)
        )
        if contact is not None:
            recipients.append(contact)
    elif not data.handler_id:
        recipients.append(("department", data.department))  # nobody holds it yet
    unique = list(dict.fromkeys(recipients))
    return [Intent(k, rid, template, data.customer_id, True, variables) for k, rid in unique]


def for_callback(data: ComplaintCallbackDue | ProfileCallbackDue) -> list[Intent]:
    """Whoever must call the customer (employee or team duty contact), with reason and evidence."""
    if isinstance(data, ComplaintCallbackDue):
        evidence: dict[str, Any] = {"complaint_id": data.complaint_id, "sequence": data.sequence}
    else:
        evidence = dict(data.evidence)
    variables = _vars(
        customer_id=data.customer_id, reason=data.reason, evidence=evidence, due_at=data.due_at
    )
    # Profile names the maintenance team when the customer has no relationship manager;
    # complaints a department whose desk owns the complaint (filed in the app).
    kind: RecipientKind = data.assignee_kind or "employee"
    return [Intent(kind, data.assignee_id, "callback_due_staff", data.customer_id, True, variables)]


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m"
