"""Staff messages (SLA, callbacks), complaint acknowledgements, and who may read what."""

from __future__ import annotations

import base64
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.contracts.topics import (
    COMPLAINT_CALLBACK_DUE,
    COMPLAINT_UPDATED,
    PROFILE_CALLBACK_DUE,
    SLA_BREACHED,
    SLA_WARNING,
)
from shared.testing.kafka import make_event, publish
from shared.testing.waiting import eventually
from tests.integration.notifications.conftest import team_mobile
from tests.integration.notifications.support import (
    known_customer,
    messages,
    new_customer,
    new_mobile,
    profile,
    settled,
)

pytestmark = pytest.mark.integration


def new_employee() -> str:
    return f"E-{uuid.uuid4().hex[:8]}"


async def put_staff(svc, employee_id: str, **fields: Any) -> dict[str, Any]:
    body = {"name": f"Staff {employee_id}", "mobile": new_mobile(), "language": "en"} | fields
    response = await svc.http.put(f"/staff/{employee_id}", json=body, headers=svc.token("ops"))
    assert response.status_code == 200, response.text
    return body


def sla_data(customer: str, owner: str, handler: str | None, department: str) -> dict[str, Any]:
    return {
        "complaint_id": f"CMP-{uuid.uuid4().hex[:6]}",
        "customer_id": customer,
        "severity": "major",
        "clock": "resolution",
        "due_at": datetime.now(UTC).isoformat(),
        "owner_id": owner,
        "handler_id": handler,
        "department": department,
    }


async def test_a_level_1_breach_reaches_owner_handler_and_department_head(
    notifications, kafka_producer, gateway
):
    department = f"dept_{uuid.uuid4().hex[:6]}"
    owner, handler, head = new_employee(), new_employee(), new_employee()
    people = {
        owner: await put_staff(notifications, owner),
        handler: await put_staff(notifications, handler, language="zh-CN"),
        head: await put_staff(
            notifications, head, department=department, roles=["department_head"]
        ),
    }
    customer = new_customer()
    breach = sla_data(customer, owner, handler, department) | {
        "escalation_level": 1,
        "overdue_by_seconds": 5400,
    }
    await publish(kafka_producer, SLA_BREACHED, make_event(SLA_BREACHED, breach))

    for employee, person in people.items():
        [message] = await settled(notifications, "sla_breached_staff", employee_id=employee)
        assert message["status"] == "sent" and message["urgent"] is True
        assert breach["complaint_id"] in message["body"]
        [received] = gateway.to("sms", person["mobile"])
        assert received.body["text"] == message["body"]
    [in_chinese] = await messages(notifications, employee_id=handler)
    assert "超时升级1级" in in_chinese["body"] and "1h30m" in in_chinese["body"]


async def test_a_level_2_breach_reaches_the_branch_president(notifications, kafka_producer):
    branch = f"B-{uuid.uuid4().hex[:6]}"
    owner, president = new_employee(), new_employee()
    await put_staff(notifications, owner)
    await put_staff(notifications, president, branch_id=branch, roles=["branch_president"])
    customer = new_customer()
    await known_customer(notifications, kafka_producer, profile(customer, branch_id=branch))
    breach = sla_data(customer, owner, None, "operations") | {
        "escalation_level": 2,
        "overdue_by_seconds": 100,
    }
    await publish(kafka_producer, SLA_BREACHED, make_event(SLA_BREACHED, breach))

    [message] = await settled(notifications, "sla_breached_staff", employee_id=president)
    assert message["status"] == "sent"
    assert "escalation level 2" in message["body"]


async def test_a_warning_without_a_handler_goes_to_owner_and_the_department_duty_contact(
    notifications, kafka_producer, gateway
):
    department = f"dept_{uuid.uuid4().hex[:6]}"
    duty_mobile = new_mobile()
    response = await notifications.http.put(
        f"/departments/{department}/duty-contact",
        json={"name": "duty desk", "mobile": duty_mobile, "language": "en"},
        headers=notifications.token("admin"),
    )
    assert response.status_code == 200, response.text
    owner = new_employee()
    await put_staff(notifications, owner)
    warning = sla_data(new_customer(), owner, None, department)
    await publish(kafka_producer, SLA_WARNING, make_event(SLA_WARNING, warning))

    [to_owner] = await settled(notifications, "sla_warning_staff", employee_id=owner)
    assert to_owner["status"] == "sent"

    async def duty_received() -> list[Any]:
        return gateway.to("sms", duty_mobile)

    [received] = await eventually(duty_received, bool)
    assert warning["complaint_id"] in received.body["text"]


async def test_callbacks_reach_the_assignee_with_reason_and_evidence(notifications, kafka_producer):
    assignee = new_employee()
    await put_staff(notifications, assignee, language="zh-CN")
    customer = new_customer()
    await known_customer(notifications, kafka_producer, profile(customer, name="韩梅梅"))
    due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    await publish(
        kafka_producer,
        PROFILE_CALLBACK_DUE,
        make_event(
            PROFILE_CALLBACK_DUE,
            {
                "customer_id": customer,
                "reason": "transaction_decline",
                "evidence": {"last_6_months": 4, "previous_6_months": 12},
                "assignee_id": assignee,
                "due_at": due,
            },
        ),
    )
    await publish(
        kafka_producer,
        COMPLAINT_CALLBACK_DUE,
        make_event(
            COMPLAINT_CALLBACK_DUE,
            {
                "customer_id": customer,
                "reason": "complaint_followup",
                "complaint_id": "CMP-77",
                "sequence": 1,
                "assignee_id": assignee,
                "due_at": due,
            },
        ),
    )
    sent = await settled(notifications, "callback_due_staff", employee_id=assignee, count=2)
    bodies = sorted(m["body"] for m in sent)
    assert all(m["status"] == "sent" for m in sent)
    assert any("交易量下降" in b and "previous_6_months=12" in b and "韩梅梅" in b for b in bodies)
    assert any("投诉回访" in b and "CMP-77" in b for b in bodies)


async def test_a_filed_complaint_is_acknowledged_with_ticket_and_deadline(
    notifications, kafka_producer
):
    customer = new_customer()
    await known_customer(notifications, kafka_producer, profile(customer, language="zh-CN"))
    filed = {
        "complaint_id": "CMP-4711",
        "complaint_ref": "APP-9",
        "customer_id": customer,
        "status": "received",
        "severity": "urgent",
        "category": "fees",
        "owner_id": "E001",
        "department": "retail_banking",
        "resolution_due_at": "2026-11-23T06:00:00+00:00",
        "change": "filed",
    }
    await publish(kafka_producer, COMPLAINT_UPDATED, make_event(COMPLAINT_UPDATED, filed))
    [message] = await settled(notifications, "complaint_received_customer", customer_id=customer)
    assert message["status"] == "sent"
    assert "CMP-4711" in message["body"] and "2026-11-23 14:00" in message["body"]


# --- who may read what -----------------------------------------------------------------


async def test_customers_read_only_their_own_messages(notifications, kafka_producer):
    customer = new_customer()
    await known_customer(notifications, kafka_producer, profile(customer))
    filed = {
        "complaint_id": "CMP-1",
        "complaint_ref": "APP-1",
        "customer_id": customer,
        "status": "received",
        "severity": "normal",
        "category": "other",
        "owner_id": "E001",
        "department": "customer_service",
        "change": "filed",
    }
    await publish(kafka_producer, COMPLAINT_UPDATED, make_event(COMPLAINT_UPDATED, filed))
    [message] = await settled(notifications, "complaint_received_customer", customer_id=customer)

    own = notifications.token("customer", customer_id=customer)
    other = notifications.token("customer", customer_id=new_customer())
    listed = await notifications.http.get("/notifications", headers=own)
    assert [m["notification_id"] for m in listed.json()["items"]] == [message["notification_id"]]
    assert "****" in listed.json()["items"][0]["address"]  # the mobile number is masked
    forbidden = await notifications.http.get(
        "/notifications", params={"customer_id": customer}, headers=other
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == "forbidden"
    path = f"/notifications/{message['notification_id']}"
    assert (await notifications.http.get(path, headers=own)).status_code == 200
    assert (await notifications.http.get(path, headers=other)).status_code == 404
    assert (await notifications.http.get("/notifications")).status_code == 401


async def test_staff_read_only_their_own_messages(notifications):
    me = new_employee()
    mine = notifications.token("staff", employee_id=me)
    assert (await notifications.http.get("/notifications", headers=mine)).json() == {"items": []}
    response = await notifications.http.get(
        "/notifications", params={"employee_id": "E001"}, headers=mine
    )
    assert response.status_code == 403


async def test_only_ops_and_admin_maintain_staff_and_duty_contacts(notifications):
    staff = notifications.token("staff", employee_id="E001")
    response = await notifications.http.put("/staff/E999", json={"name": "x"}, headers=staff)
    assert response.status_code == 403
    response = await notifications.http.put(
        "/staff/E999", json={"name": "x", "roles": ["king"]}, headers=notifications.token("ops")
    )
    assert response.status_code == 422 and "king" in response.json()["detail"]
    response = await notifications.http.put(
        "/staff/E999", json={"name": "x", "mobile": "12345"}, headers=notifications.token("ops")
    )
    assert response.status_code == 422 and "mobile" in response.json()["detail"]


# --- templates -------------------------------------------------------------------------


async def test_templates_are_read_and_edited_with_their_variables_checked(notifications):
    admin = notifications.token("admin")
    key = "tier_customer_assigned"
    current = await notifications.http.get(f"/templates/{key}", headers=admin)
    assert current.status_code == 200
    template = current.json()
    assert set(template["bodies"]) == {"zh-CN", "en"}
    assert "customer_id" in template["variables"]

    bad = {
        "category": "service",
        "bodies": {"zh-CN": "{customer_id}{balance}", "en": "{customer_id} {iban}"},
    }
    response = await notifications.http.put(f"/templates/{key}", json=bad, headers=admin)
    assert response.status_code == 422
    assert response.json()["unknown_variables"] == ["balance", "iban"]
    assert "balance" in response.json()["detail"]

    edited = {
        "category": "service",
        "bodies": template["bodies"] | {"en": "{customer_id} is yours"},
    }
    response = await notifications.http.put(f"/templates/{key}", json=edited, headers=admin)
    try:
        assert response.status_code == 200, response.text
        again = (await notifications.http.get(f"/templates/{key}", headers=admin)).json()
        assert again["bodies"]["en"] == "{customer_id} is yours"
        assert again["updated_by"] == "admin"
    finally:
        restore = {"category": "service", "bodies": template["bodies"]}
        await notifications.http.put(f"/templates/{key}", json=restore, headers=admin)

    ops_edit = await notifications.http.put(
        f"/templates/{key}", json=edited, headers=notifications.token("ops")
    )
    assert ops_edit.status_code == 403
    missing = await notifications.http.get("/templates/nope", headers=admin)
    assert missing.status_code == 404


async def test_a_profile_callback_for_a_team_goes_to_the_teams_duty_contact(
    notifications, kafka_producer, gateway
):
    customer = new_customer()
    await known_customer(notifications, kafka_producer, profile(customer))
    callback = {
        "customer_id": customer,
        "reason": "new_customer_inactive",
        "evidence": {"onboarded_at": "2026-10-01"},
        "assignee_id": "customer_manager",
        "assignee_kind": "department",
        "due_at": datetime.now(UTC).isoformat(),
    }
    await publish(kafka_producer, PROFILE_CALLBACK_DUE, make_event(PROFILE_CALLBACK_DUE, callback))

    async def to_team() -> list[Any]:
        return [
            r
            for r in gateway.to("sms", team_mobile("customer_manager"))
            if customer in r.body["text"]
        ]

    [received] = await eventually(to_team, bool)
    assert "新客户未激活" in received.body["text"]


async def test_an_id_too_long_for_its_index_is_a_422_not_a_500(notifications):
    ops = notifications.token("ops")
    # 6,000 characters of no pattern: more than a btree index entry holds (about 2,700 bytes)
    employee_id = base64.urlsafe_b64encode(os.urandom(4500)).decode()
    response = await notifications.http.put(
        f"/staff/{employee_id}", json={"name": "x"}, headers=ops
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
