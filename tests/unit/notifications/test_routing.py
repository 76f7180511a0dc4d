"""Which messages each event calls for."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.notifications.routing import (
    Escalation,
    for_callback,
    for_complaint_updated,
    for_sla,
    for_tier_changed,
)
from shared.contracts.events import (
    ComplaintCallbackDue,
    ComplaintUpdated,
    ProfileCallbackDue,
    SlaBreached,
    SlaWarning,
    TierChanged,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)


def tier(direction: str, previous: str | None = "potential") -> TierChanged:
    return TierChanged(
        customer_id="C1",
        previous_tier=previous,
        tier="quality",
        direction=direction,
        total_balance=Decimal("620000.00"),
        basis="balance",
        maintenance_team="wealth_team",
        evaluated_at=NOW,
    )


def recipients(intents):
    return [(i.recipient_kind, i.recipient_id, i.template) for i in intents]


def test_an_upgrade_congratulates_the_customer_and_tells_the_new_team():
    intents = for_tier_changed(tier("upgrade"))
    assert recipients(intents) == [
        ("customer", "C1", "tier_upgrade_customer"),
        ("department", "wealth_team", "tier_customer_assigned"),
    ]
    assert intents[0].variables["tier"] == "quality" and not intents[0].urgent
    assert intents[1].urgent and intents[1].variables["total_balance"] == "620000.00"


def test_a_downgrade_only_tells_the_new_team():
    assert recipients(for_tier_changed(tier("downgrade", "high_end"))) == [
        ("department", "wealth_team", "tier_customer_assigned")
    ]


def complaint(change: str, status: str = "received") -> ComplaintUpdated:
    return ComplaintUpdated(
        complaint_id="CMP-1",
        complaint_ref="APP-1",
        customer_id="C1",
        status=status,
        severity="urgent",
        category="fees",
        owner_id="E1",
        department="retail_banking",
        resolution_due_at=NOW,
        change=change,
    )


def test_a_filed_complaint_is_acknowledged_with_ticket_and_deadline():
    [intent] = for_complaint_updated(complaint("filed"))
    assert intent.template == "complaint_received_customer"
    assert intent.variables["ticket"] == "CMP-1"
    assert intent.variables["resolution_due_at"] == NOW.isoformat()


def test_a_resolved_complaint_tells_the_customer_and_other_changes_do_not():
    assert recipients(for_complaint_updated(complaint("resolved", "resolved"))) == [
        ("customer", "C1", "complaint_resolved_customer")
    ]
    assert for_complaint_updated(complaint("transferred", "in_progress")) == []


def sla(**fields):
    values = {
        "complaint_id": "CMP-1",
        "customer_id": "C1",
        "severity": "major",
        "clock": "resolution",
        "due_at": NOW,
        "owner_id": "E1",
        "handler_id": "E2",
        "department": "head_office_risk",
    }
    return values | fields


ESCALATION = Escalation(
    department_heads={"head_office_risk": ["E11"]},
    branch_presidents={"B001": ["E90"], "B002": ["E91"]},
    customer_branch={"C1": "B002"},
)


def test_a_warning_goes_to_owner_and_handler():
    intents = for_sla(SlaWarning(**sla()), ESCALATION)
    assert recipients(intents) == [
        ("employee", "E1", "sla_warning_staff"),
        ("employee", "E2", "sla_warning_staff"),
    ]
    assert all(i.urgent for i in intents)


def test_a_warning_without_handler_goes_to_the_department_duty_contact():
    intents = for_sla(SlaWarning(**sla(handler_id=None)), ESCALATION)
    assert ("department", "head_office_risk", "sla_warning_staff") in recipients(intents)


def test_a_level_1_breach_adds_the_department_head():
    breach = SlaBreached(**sla(), escalation_level=1, overdue_by_seconds=3720)
    intents = for_sla(breach, ESCALATION)
    assert [r[:2] for r in recipients(intents)] == [
        ("employee", "E1"),
        ("employee", "E2"),
        ("employee", "E11"),
    ]
    assert intents[0].variables["overdue"] == "1h02m"


def test_a_level_1_breach_without_a_head_on_record_goes_to_the_duty_contact():
    breach = SlaBreached(**sla(department="fees_desk"), escalation_level=1, overdue_by_seconds=0)
    assert ("department", "fees_desk") in [r[:2] for r in recipients(for_sla(breach, ESCALATION))]


def test_a_level_2_breach_adds_the_president_of_the_customers_branch():
    breach = SlaBreached(**sla(), escalation_level=2, overdue_by_seconds=0)
    assert ("employee", "E91") in [r[:2] for r in recipients(for_sla(breach, ESCALATION))]
    unknown_branch = Escalation(branch_presidents={"B001": ["E90"]})
    assert ("employee", "E90") in [r[:2] for r in recipients(for_sla(breach, unknown_branch))]


def test_a_level_2_breach_goes_to_the_president_of_the_branch_that_received_it():
    breach = SlaBreached(**sla(branch_id="B001"), escalation_level=2, overdue_by_seconds=0)
    presidents = [r for r in recipients(for_sla(breach, ESCALATION)) if r[1] in ("E90", "E91")]
    assert presidents == [("employee", "E90", "sla_breached_staff")]  # not the customer's E91
    online = SlaBreached(**sla(branch_id="online"), escalation_level=2, overdue_by_seconds=0)
    assert ("employee", "E91") in [r[:2] for r in recipients(for_sla(online, ESCALATION))]


def test_a_desk_owners_messages_go_to_its_departments_duty_contact():
    desk = sla(owner_id="customer_service", owner_kind="department", handler_id=None)
    assert recipients(for_sla(SlaWarning(**desk), ESCALATION))[0] == (
        "department",
        "customer_service",
        "sla_warning_staff",
    )
    [callback] = for_callback(
        ComplaintCallbackDue(
            customer_id="C1",
            reason="complaint_followup",
            complaint_id="CMP-1",
            sequence=1,
            assignee_id="customer_service",
            assignee_kind="department",
            due_at=NOW,
        )
    )
    assert (callback.recipient_kind, callback.recipient_id) == ("department", "customer_service")


def test_an_owner_who_also_handles_gets_one_message():
    intents = for_sla(SlaWarning(**sla(handler_id="E1")), ESCALATION)
    assert recipients(intents) == [("employee", "E1", "sla_warning_staff")]


def test_callbacks_go_to_the_assignee_with_reason_and_evidence():
    [complaint_cb] = for_callback(
        ComplaintCallbackDue(
            customer_id="C1",
            reason="complaint_followup",
            complaint_id="CMP-1",
            sequence=2,
            assignee_id="E5",
            due_at=NOW,
        )
    )
    assert (complaint_cb.recipient_id, complaint_cb.variables["evidence"]) == (
        "E5",
        {"complaint_id": "CMP-1", "sequence": 2},
    )
    [profile_cb] = for_callback(
        ProfileCallbackDue(
            customer_id="C1",
            reason="transaction_decline",
            evidence={"last_6_months": 3, "previous_6_months": 12},
            assignee_id="E6",
            due_at=NOW,
        )
    )
    assert profile_cb.variables["reason"] == "transaction_decline"
    assert profile_cb.variables["evidence"]["previous_6_months"] == 12


def test_a_profile_callback_for_a_team_goes_to_its_duty_contact():
    [intent] = for_callback(
        ProfileCallbackDue(
            customer_id="C1",
            reason="new_customer_inactive",
            evidence={"onboarded_at": "2026-10-01"},
            assignee_id="customer_manager",
            assignee_kind="department",
            due_at=NOW,
        )
    )
    assert (intent.recipient_kind, intent.recipient_id) == ("department", "customer_manager")
