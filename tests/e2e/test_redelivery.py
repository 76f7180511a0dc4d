"""Flow 4: every input event published twice changes nothing the second time (counted exactly)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from shared.contracts.topics import (
    BALANCE_CHANGED,
    COMPLAINT_CALLBACK_DUE,
    COMPLAINT_FILED,
    COMPLAINT_UPDATED,
    CUSTOMER_ACTIVITY,
    CUSTOMER_UPDATED,
    NOTIFICATION_STATUS,
    PROFILE_CALLBACK_DUE,
    PROFILE_CHANGED,
    SLA_BREACHED,
    SLA_WARNING,
    TIER_CHANGED,
)
from shared.testing.kafka import make_event
from tests.e2e.flows import RELATIONSHIP_MANAGER, of, posting
from tests.e2e.support import System, data_of, keyed, new_id

pytestmark = pytest.mark.e2e

OUTPUTS = (
    TIER_CHANGED,
    COMPLAINT_UPDATED,
    SLA_WARNING,
    SLA_BREACHED,
    COMPLAINT_CALLBACK_DUE,
    PROFILE_CHANGED,
    PROFILE_CALLBACK_DUE,
    NOTIFICATION_STATUS,
)


async def outputs_about(system: System, customer_id: str) -> dict[str, Any]:
    """Everything the system emitted and holds about a customer, read afresh."""
    records = await asyncio.gather(
        *(system.read_topic(topic, keyed(customer_id)) for topic in OUTPUTS)
    )
    counts: dict[str, Any] = {t: len(rs) for t, rs in zip(OUTPUTS, records, strict=True)}
    statuses = records[OUTPUTS.index(NOTIFICATION_STATUS)]
    counts["notifications"] = len({data_of(r)["notification_id"] for r in statuses})
    counts["notification_templates"] = Counter(data_of(r)["template"] for r in statuses)
    complaints = system.stack.complaints
    answer = await complaints.http.get(
        "/complaints", params={"customer_id": customer_id}, headers=complaints.token("ops")
    )
    assert answer.status_code == 200, answer.text
    counts["complaints"] = len(answer.json()["items"])
    counts["messages_to_customer"] = len(await system.notifications(customer_id=customer_id))
    return counts


async def test_the_same_input_events_twice_make_no_extra_output(system: System):
    crm: list[dict[str, Any]] = []
    customer = await system.onboard(relationship_manager_id=RELATIONSHIP_MANAGER, crm_events=crm)
    cid = customer.customer_id
    now = system.stack.now()
    inputs: list[tuple[str, dict[str, Any]]] = [(CUSTOMER_UPDATED, crm[0])]

    async def send(topic: str, data: dict[str, Any]) -> dict[str, Any]:
        event = await system.publish(topic, data)
        inputs.append((topic, event))
        return event

    await send(BALANCE_CHANGED, posting(cid, "A1", "60000.00", "60000.00", 1))
    await system.topics[TIER_CHANGED].wait_for(keyed(cid))
    await send(BALANCE_CHANGED, posting(cid, "A2", "3000000.00", "3000000.00", 1))
    filing = {
        "complaint_ref": new_id("HOTLINE"),
        "customer_id": cid,
        "channel": "hotline",
        "category": "fees",
        "description": "Charged an annual fee I was told was waived.",
        "received_by": "E001",
        "branch_id": "B001",
        "received_at": now.isoformat(),
    }
    await send(COMPLAINT_FILED, filing)
    for back in (2, 1, 0):
        at = system.local(now - timedelta(days=back))
        view = {"customer_id": cid, "activity": "product_view", "product_type": "wealth"}
        await send(CUSTOMER_ACTIVITY, view | {"product_id": "WM-1", "at": at.isoformat()})

    # Everything the inputs call for, once.
    await system.topics[TIER_CHANGED].wait_for(keyed(cid), count=2)
    await system.topics[COMPLAINT_UPDATED].wait_for(of(cid, change="filed"))
    await system.topics[PROFILE_CALLBACK_DUE].wait_for(keyed(cid))
    await system.settled("tier_upgrade_customer", about=cid, customer_id=cid)
    await system.settled("complaint_received_customer", about=cid, customer_id=cid)
    for team in ("customer_manager", "private_banking"):
        await system.settled("tier_customer_assigned", about=cid, department_id=team)
    await system.settled("callback_due_staff", about=cid, employee_id=RELATIONSHIP_MANAGER)
    await system.stack.drained()
    before = await outputs_about(system, cid)

    # The same events again (same event ids), and the complaint under a new event id too.
    sent = [await system.republish(topic, event) for topic, event in inputs]
    again = make_event(COMPLAINT_FILED, filing, occurred_at=system.stack.now().isoformat())
    sent.append(await system.republish(COMPLAINT_FILED, again))
    await system.stack.consumed(sent)
    await system.stack.drained()
    after = await outputs_about(system, cid)

    assert after == before
    assert after[TIER_CHANGED] == 2
    assert after["complaints"] == 1
    assert after[PROFILE_CALLBACK_DUE] == 1
    assert after["notifications"] == 5
    assert after["messages_to_customer"] == 2
    # Every notification queued once and sent once: two statuses each, no more.
    assert after[NOTIFICATION_STATUS] == 10
    assert after[SLA_WARNING] == after[SLA_BREACHED] == after[COMPLAINT_CALLBACK_DUE] == 0
