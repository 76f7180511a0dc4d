"""The three business flows end to end, each with customers of its own (re-run after garbage)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.contracts.topics import (
    BALANCE_CHANGED,
    COMPLAINT_CALLBACK_DUE,
    COMPLAINT_FILED,
    COMPLAINT_UPDATED,
    CUSTOMER_ACTIVITY,
    NOTIFICATION_STATUS,
    OPS_ALERTS,
    PROFILE_CALLBACK_DUE,
    PROFILE_CHANGED,
    SLA_BREACHED,
    SLA_WARNING,
    TIER_CHANGED,
)
from shared.testing.waiting import eventually
from tests.e2e.support import Customer, Record, System, data_of, keyed, new_id, value_of

# Duty contacts and department heads of the notification seed (services/notifications/seed).
DUTY_MOBILE = {
    "branch_service": "+8613800001001",
    "customer_manager": "+8613800001002",
    "wealth_team": "+8613800001003",
    "private_banking": "+8613800001004",
    "customer_service": "+8613800001011",
}
RISK_HEAD, RISK_HEAD_MOBILE = "E011", "+8613800000011"
RELATIONSHIP_MANAGER, RELATIONSHIP_MANAGER_MOBILE = "E002", "+8613800000002"


@dataclass
class Published:
    """The input events a flow published, by topic, so they can be published again."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def add(self, topic: str, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append((topic, event))
        return event


def of(customer_id: str, **fields: Any) -> Any:
    """Records keyed by the customer whose data has the given field values."""
    is_theirs = keyed(customer_id)

    def predicate(record: Record) -> bool:
        if not is_theirs(record):
            return False
        data = data_of(record)
        return all(data.get(k) == v for k, v in fields.items())

    return predicate


def posting(customer_id: str, account: str, balance: str, delta: str, seq: int) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "account_id": f"{customer_id}-{account}",
        "currency": "CNY",
        "balance": balance,
        "delta": delta,
        "txn_id": new_id("T"),
        "account_seq": seq,
    }


# -- flow 1: tiers ------------------------------------------------------------------------

TIER_STEPS = (
    # account, balance, delta, seq → tier, previous tier, direction, total, maintenance team
    (("A1", "20000.00", "20000.00", 1), (None, "ordinary", "initial", "20000.00")),
    (("A1", "80000.00", "60000.00", 2), ("ordinary", "potential", "upgrade", "80000.00")),
    (("A2", "3000000.00", "3000000.00", 1), ("potential", "high_end", "upgrade", "3080000.00")),
)
TEAM = {
    "ordinary": "branch_service",
    "potential": "customer_manager",
    "quality": "wealth_team",
    "high_end": "private_banking",
}


async def tier_flow(system: System, channel: str) -> Customer:
    """Postings across 50,000 and 3,000,000: two upgrades, congratulations, teams told."""
    customer = await system.onboard(channel=channel)
    cid = customer.customer_id
    tiers = system.topics[TIER_CHANGED]
    for count, (post, (previous, tier, direction, total)) in enumerate(TIER_STEPS, start=1):
        event = await system.publish(BALANCE_CHANGED, posting(cid, *post))
        records = await tiers.wait_for(keyed(cid), count=count)
        assert len(records) == count, [data_of(r) for r in records]
        changed = value_of(records[-1])
        assert changed["causation_id"] == event["event_id"]
        assert changed["data"] | {"evaluated_at": None} == {
            "customer_id": cid,
            "previous_tier": previous,
            "tier": tier,
            "direction": direction,
            "total_balance": total,
            "basis": "balance",
            "maintenance_team": TEAM[tier],
            "evaluated_at": None,
        }
    upgrades = [r for r in tiers.matching(keyed(cid)) if data_of(r)["direction"] == "upgrade"]
    assert [data_of(r)["tier"] for r in upgrades] == ["potential", "high_end"]

    tiering = system.stack.tiering
    response = await tiering.http.get(
        f"/customers/{cid}/tier", headers=tiering.token("staff", employee_id="E001")
    )
    assert response.status_code == 200, response.text
    assert response.json()["tier"] == "high_end"
    assert response.json()["total_balance"] == "3080000.00"

    profile = system.stack.profile

    async def read_profile() -> dict[str, Any]:
        answer = await profile.http.get(f"/profiles/{cid}", headers=profile.token("admin"))
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    shown = await eventually(read_profile, lambda p: p["tier"] == "high_end")
    assert shown["maintenance_team"] == "private_banking"
    assert shown["preferred_channel"] == channel

    # The customer: congratulated once per upgrade, on the channel they prefer.
    congratulations = await system.settled(
        "tier_upgrade_customer", about=cid, count=2, customer_id=cid
    )
    assert {(m["status"], m["channel"]) for m in congratulations} == {("sent", channel)}
    ids = [m["notification_id"] for m in congratulations]
    await system.delivered_to(customer.address, ids)
    notifications = system.stack.notifications
    own = await notifications.http.get(
        "/notifications", headers=notifications.token("customer", customer_id=cid)
    )
    assert own.status_code == 200, own.text
    assert sorted(m["notification_id"] for m in own.json()["items"]) == sorted(ids)

    # The maintenance team of every tier the customer held is told, through its duty contact.
    team_ids = []
    for team in ("branch_service", "customer_manager", "private_banking"):
        [told] = await system.settled("tier_customer_assigned", about=cid, department_id=team)
        assert (told["status"], told["channel"], told["urgent"]) == ("sent", "sms", True)
        await system.delivered_to(DUTY_MOBILE[team], [told["notification_id"]])
        team_ids.append(told["notification_id"])
    sent = await system.topics[NOTIFICATION_STATUS].wait_for(of(cid, status="sent"), count=5)
    assert {data_of(r)["notification_id"] for r in sent} == set(ids + team_ids)
    return customer


# -- flow 2: a complaint ------------------------------------------------------------------


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def complaint_flow(system: System) -> str:
    """Card fraud: major, head-office risk; warning, breach, resolution, callbacks 3/7/30."""
    stack, topics = system.stack, system.topics
    owner, owner_mobile = await system.new_staff("customer_service")
    handler, handler_mobile = await system.new_staff("head_office_risk")
    customer = await system.onboard()
    cid = customer.customer_id

    received_at = stack.now()
    await system.publish(
        COMPLAINT_FILED,
        {
            "complaint_ref": new_id("APP"),
            "customer_id": cid,
            "channel": "app",
            "category": "card_fraud",
            "description": "Two card payments I never made, in another city.",
            "amount_involved": "2000.00",
            "received_by": owner,
            "branch_id": "B001",
            "received_at": received_at.isoformat(),
        },
    )
    [filed] = await topics[COMPLAINT_UPDATED].wait_for(of(cid, change="filed"))
    complaint = data_of(filed)
    complaint_id = complaint["complaint_id"]
    assert (complaint["severity"], complaint["department"]) == ("major", "head_office_risk")
    assert (complaint["owner_id"], complaint["status"]) == (owner, "received")
    assert _at(complaint["resolution_due_at"]) == received_at + timedelta(hours=6)

    [ack] = await system.settled("complaint_received_customer", about=cid, customer_id=cid)
    assert ack["status"] == "sent" and complaint_id in ack["body"], ack
    await system.delivered_to(customer.mobile, [ack["notification_id"]])

    complaints = stack.complaints
    as_handler = complaints.token("staff", employee_id=handler, department="head_office_risk")
    for action, status in (("acknowledge", "acknowledged"), ("start", "in_progress")):
        answer = await complaints.http.post(
            f"/complaints/{complaint_id}/{action}", headers=as_handler
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == status
    assert answer.json()["handler_id"] == handler

    # 80% of the 6-hour resolution window: the owner and the handler are warned.
    await stack.advance_clock_to(received_at + timedelta(hours=4, minutes=48, seconds=1))
    [warning] = await topics[SLA_WARNING].wait_for(of(cid, complaint_id=complaint_id))
    assert data_of(warning) | {"due_at": None} == {
        "complaint_id": complaint_id,
        "customer_id": cid,
        "severity": "major",
        "clock": "resolution",
        "due_at": None,
        "owner_id": owner,
        "owner_kind": "employee",
        "handler_id": handler,
        "department": "head_office_risk",
        "branch_id": "B001",
    }
    for employee, mobile in ((owner, owner_mobile), (handler, handler_mobile)):
        [warned] = await system.settled("sla_warning_staff", about=cid, employee_id=employee)
        assert warned["status"] == "sent" and warned["urgent"], warned
        await system.delivered_to(mobile, [warned["notification_id"]])

    # Past the deadline: breach level 1, escalated to head-office risk's department head.
    await stack.advance_clock_to(received_at + timedelta(hours=6, seconds=1))
    [breach] = await topics[SLA_BREACHED].wait_for(of(cid, complaint_id=complaint_id))
    assert data_of(breach)["escalation_level"] == 1
    assert data_of(breach)["clock"] == "resolution"
    assert data_of(breach)["overdue_by_seconds"] >= 0
    await topics[OPS_ALERTS].wait_for(
        lambda r: (
            keyed(cid)(r)
            and data_of(r)["kind"] == "sla_breach"
            and data_of(r)["details"]["complaint_id"] == complaint_id
        )
    )
    for employee, mobile in (
        (owner, owner_mobile),
        (handler, handler_mobile),
        (RISK_HEAD, RISK_HEAD_MOBILE),
    ):
        [told] = await system.settled("sla_breached_staff", about=cid, employee_id=employee)
        assert told["status"] == "sent" and complaint_id in told["body"], told
        await system.delivered_to(mobile, [told["notification_id"]])

    answer = await complaints.http.post(
        f"/complaints/{complaint_id}/resolve",
        json={"resolution": "Both payments refunded; card reissued.", "root_cause": "skimming"},
        headers=as_handler,
    )
    assert answer.status_code == 200, answer.text
    resolved = answer.json()
    assert resolved["status"] == "resolved"
    due = {c["sequence"]: _at(c["due_at"]) for c in resolved["callbacks"]}
    resolved_at = _at(resolved["resolved_at"])
    assert due == {s: resolved_at + timedelta(days=d) for s, d in ((1, 3), (2, 7), (3, 30))}
    [told] = await system.settled("complaint_resolved_customer", about=cid, customer_id=cid)
    assert told["status"] == "sent", told

    # Day 3, 7 and 30 after resolution: each callback is due and reaches the owner.
    for sequence in (1, 2, 3):
        await stack.advance_clock_to(due[sequence] + timedelta(seconds=1))
        [callback] = await topics[COMPLAINT_CALLBACK_DUE].wait_for(
            of(cid, complaint_id=complaint_id, sequence=sequence)
        )
        assert data_of(callback)["assignee_id"] == owner
        assert data_of(callback)["reason"] == "complaint_followup"
        calls = await system.settled(
            "callback_due_staff", about=cid, count=sequence, employee_id=owner
        )
        assert all(m["status"] == "sent" for m in calls), calls
        await system.delivered_to(owner_mobile, [m["notification_id"] for m in calls])

    # Acknowledged at once and resolved before 150%: no response-clock or level-2 alerts.
    await stack.drained()
    await topics[SLA_WARNING].caught_up()
    await topics[SLA_BREACHED].caught_up()
    assert len(topics[SLA_WARNING].matching(of(cid))) == 1
    assert len(topics[SLA_BREACHED].matching(of(cid))) == 1
    return complaint_id


async def app_complaint_flow(system: System) -> str:
    """A complaint the customer files in the app is owned by the customer service desk: its
    day-3 callback reaches that department's duty contact."""
    stack, complaints = system.stack, system.stack.complaints
    customer = await system.onboard()
    cid = customer.customer_id
    filed = await complaints.http.post(
        "/complaints",
        json={"category": "fees", "description": "A fee I was never told about."},
        headers=complaints.token("customer", customer_id=cid),
    )
    assert filed.status_code == 201, filed.text
    complaint_id = filed.json()["complaint_id"]
    assert (filed.json()["owner_id"], filed.json()["owner_kind"]) == (
        "customer_service",
        "department",
    )
    staff = complaints.token("staff", employee_id="E003", department="retail_banking")
    for action in ("acknowledge", "start"):
        answer = await complaints.http.post(f"/complaints/{complaint_id}/{action}", headers=staff)
        assert answer.status_code == 200, answer.text
    answer = await complaints.http.post(
        f"/complaints/{complaint_id}/resolve",
        json={"resolution": "Fee refunded.", "root_cause": "tariff notice missing"},
        headers=staff,
    )
    assert answer.status_code == 200, answer.text
    [first] = [c for c in answer.json()["callbacks"] if c["sequence"] == 1]

    await stack.advance_clock_to(_at(first["due_at"]) + timedelta(seconds=1))
    [callback] = await system.topics[COMPLAINT_CALLBACK_DUE].wait_for(
        of(cid, complaint_id=complaint_id, sequence=1)
    )
    assert (data_of(callback)["assignee_id"], data_of(callback)["assignee_kind"]) == (
        "customer_service",
        "department",
    )
    [call] = await system.settled("callback_due_staff", about=cid, department_id="customer_service")
    assert call["status"] == "sent", call
    await system.delivered_to(DUTY_MOBILE["customer_service"], [call["notification_id"]])
    return complaint_id


# -- flow 3: browsing wealth products without buying --------------------------------------


async def browsing_flow(system: System) -> Customer:
    """Wealth views on three Shanghai days, no purchase: the relationship manager is told."""
    customer = await system.onboard(relationship_manager_id=RELATIONSHIP_MANAGER)
    cid = customer.customer_id
    await system.topics[PROFILE_CHANGED].wait_for(
        of(cid, relationship_manager_id=RELATIONSHIP_MANAGER)
    )
    now = system.stack.now()
    days = [system.local(now - timedelta(days=back)) for back in (2, 1, 0)]
    for at in days:
        await system.publish(
            CUSTOMER_ACTIVITY,
            {
                "customer_id": cid,
                "activity": "product_view",
                "product_type": "wealth",
                "product_id": "WM-2026-07",
                "at": at.isoformat(),
            },
        )
    [due] = await system.topics[PROFILE_CALLBACK_DUE].wait_for(keyed(cid))
    warning = data_of(due)
    assert warning["reason"] == "browsing_without_purchase"
    assert (warning["assignee_id"], warning["assignee_kind"]) == (RELATIONSHIP_MANAGER, "employee")
    assert warning["evidence"]["view_days"] == [d.date().isoformat() for d in days]
    assert warning["evidence"]["wealth_purchases_in_span"] == 0

    [told] = await system.settled("callback_due_staff", about=cid, employee_id=RELATIONSHIP_MANAGER)
    assert told["status"] == "sent" and told["urgent"], told
    await system.delivered_to(RELATIONSHIP_MANAGER_MOBILE, [told["notification_id"]])

    profile = system.stack.profile
    answer = await profile.http.get(f"/profiles/{cid}/signals", headers=profile.token("admin"))
    assert answer.status_code == 200, answer.text
    assert [w["reason"] for w in answer.json()["early_warnings"]] == ["browsing_without_purchase"]
    return customer
