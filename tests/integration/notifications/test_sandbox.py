"""The dev default: sandbox provider and seeded staff, as `steward up` runs the service."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from services.notifications import store
from services.notifications.app import SPEC
from services.notifications.providers import BatchProvider, OutgoingMessage
from services.notifications.seed import load_seed
from shared.contracts.topics import SLA_BREACHED
from shared.testing.infra import Infrastructure
from shared.testing.kafka import make_event, publish
from shared.testing.services import RunningService, running_service, service_settings
from tests.integration.notifications.support import (
    detail,
    known_customer,
    new_customer,
    profile,
    settled,
    upgrade,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def sandboxed(infra: Infrastructure) -> AsyncIterator[RunningService]:
    settings = service_settings(SPEC, infra)  # providers left at their dev default
    async with running_service(SPEC, settings) as svc:
        assert settings.schema_name
        assert await load_seed(infra.database_url, schema=settings.schema_name) == (13, 11)
        yield svc


def quiet_free(customer: str, **fields: object) -> dict[str, object]:
    # No quiet hours (start == end): these tests are not about them, whatever the hour.
    return profile(customer, quiet_hours={"start": "03:00", "end": "03:00"}, **fields)


async def test_seed_loading_is_idempotent(sandboxed, infra):
    schema = sandboxed.runtime.schema
    assert await load_seed(infra.database_url, schema=schema) == (13, 11)
    response = await sandboxed.http.get(
        "/notifications", params={"employee_id": "E010"}, headers=sandboxed.token("ops")
    )
    assert response.status_code == 200


async def test_a_tier_upgrade_is_delivered_by_the_sandbox_and_readable_back(
    sandboxed, kafka_producer
):
    customer = new_customer()
    data = await known_customer(
        sandboxed, kafka_producer, quiet_free(customer, relationship_manager_id="E003")
    )
    await upgrade(kafka_producer, customer)

    [message] = await settled(sandboxed, "tier_upgrade_customer", customer_id=customer)
    assert (message["status"], message["channel"]) == ("sent", "sms")
    assert "张丽" in message["body"]  # the relationship manager, from the seeded staff
    full = await detail(sandboxed, message["notification_id"])
    assert [r["provider"] for r in full["receipts"]] == ["sandbox"]
    response = await sandboxed.http.get(
        "/sandbox/messages", params={"address": data["mobile"]}, headers=sandboxed.token("ops")
    )
    [delivered] = response.json()["items"]
    assert delivered["body"] == message["body"]
    assert delivered["notification_id"] == message["notification_id"]


async def test_an_sla_breach_reaches_seeded_owner_handler_and_escalation_contacts(
    sandboxed, kafka_producer
):
    customer = new_customer()
    await known_customer(sandboxed, kafka_producer, quiet_free(customer))
    for level, escalation_contact in ((1, "E010"), (2, "E090")):
        breach = {
            "complaint_id": f"CMP-{customer}",
            "customer_id": customer,
            "severity": "normal",
            "clock": "resolution",
            "due_at": datetime.now(UTC).isoformat(),
            "owner_id": "E001",
            "handler_id": "E002",
            "department": "customer_service",
            "escalation_level": level,
            "overdue_by_seconds": 60,
        }
        await publish(kafka_producer, SLA_BREACHED, make_event(SLA_BREACHED, breach))
        [message] = await settled(
            sandboxed, "sla_breached_staff", employee_id=escalation_contact, mentioning=customer
        )
        assert message["status"] == "sent"
        assert f"超时升级{level}级" in message["body"]
    for employee in ("E001", "E002"):
        sent = await settled(
            sandboxed, "sla_breached_staff", employee_id=employee, count=2, mentioning=customer
        )
        assert all(m["status"] == "sent" for m in sent)


async def test_the_sandbox_refuses_a_malformed_mobile_as_an_invalid_recipient(
    sandboxed, kafka_producer
):
    customer = new_customer()
    await known_customer(sandboxed, kafka_producer, quiet_free(customer, mobile="12345"))
    await upgrade(kafka_producer, customer)
    [message] = await settled(sandboxed, "tier_upgrade_customer", customer_id=customer)
    assert message["status"] == "failed"
    assert "invalid recipient" in message["reason"]


async def test_the_sandbox_records_a_batch_at_once_and_refuses_only_the_bad_address(sandboxed):
    runtime = sandboxed.runtime
    provider = runtime.state["providers"]["sms"]
    assert isinstance(provider, BatchProvider)
    good, bad = (
        OutgoingMessage(str(uuid.uuid4()), "sms", address, "批量测试", "tpl")
        for address in (f"+86138{uuid.uuid4().int % 10**8:08d}", "13800000000")
    )

    results = await provider.send_batch([good, bad])

    assert [r.outcome for r in results] == ["delivered", "permanent"]
    assert results[0].provider_message_id == f"sandbox-{good.notification_id}"
    assert results[1].error == "invalid recipient: not E.164"
    async with runtime.sessions() as session:
        recorded = await session.execute(
            select(store.sandbox_messages.c.notification_id, store.sandbox_messages.c.body).where(
                store.sandbox_messages.c.notification_id.in_(
                    [good.notification_id, bad.notification_id]
                )
            )
        )
        assert recorded.all() == [(good.notification_id, "批量测试")]
