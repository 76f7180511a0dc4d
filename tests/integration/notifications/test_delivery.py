"""Events in, messages out through the real HTTP adapters and a fake gateway (real HTTP)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from services.notifications import store
from services.notifications.handlers import record_notifications
from shared.contracts import parse_event
from shared.contracts.topics import TIER_CHANGED
from shared.testing.kafka import make_event, publish, value_of
from shared.testing.waiting import eventually
from tests.integration.notifications.conftest import team_mobile
from tests.integration.notifications.support import (
    detail,
    known_customer,
    new_customer,
    new_openid,
    profile,
    settled,
    tier_changed,
    upgrade,
)

pytestmark = pytest.mark.integration


async def test_upgrade_sends_one_wechat_message_to_a_customer_who_prefers_wechat(
    notifications, kafka_producer, gateway, status_watcher
):
    customer = new_customer()
    openid = new_openid()
    data = await known_customer(
        notifications,
        kafka_producer,
        profile(customer, preferred_channel="wechat", wechat_openid=openid),
    )
    event = await upgrade(kafka_producer, customer)

    [message] = await settled(notifications, "tier_upgrade_customer", customer_id=customer)
    assert message["status"] == "sent"
    assert message["channel"] == "wechat"
    assert "Quality" in message["body"] and "wealth team" in message["body"]
    assert message["source_event_id"] == event["event_id"]
    [received] = gateway.to("wechat", openid)
    assert received.body["data"]["content"]["value"] == message["body"]
    assert gateway.to("sms", data["mobile"]) == []

    full = await detail(notifications, message["notification_id"])
    assert [(a["channel"], a["outcome"]) for a in full["attempt_log"]] == [("wechat", "delivered")]
    [receipt] = full["receipts"]
    assert receipt["provider"] == "wechat_mp" and receipt["provider_message_id"]

    records = await status_watcher.wait_for(
        lambda r: value_of(r)["data"]["notification_id"] == message["notification_id"],
        count=2,
    )
    assert [value_of(r)["data"]["status"] for r in records] == ["queued", "sent"]
    assert all(r.key == customer.encode() for r in records)


async def test_an_upgrade_tells_the_new_maintenance_team_the_customer_is_assigned(
    notifications, kafka_producer, gateway
):
    customer = new_customer()
    await known_customer(notifications, kafka_producer, profile(customer, name="Han Mei"))
    await upgrade(kafka_producer, customer, tier="high_end", maintenance_team="private_banking")

    async def assigned() -> list[dict[str, Any]]:
        items = (
            await notifications.http.get(
                "/notifications",
                params={"department_id": "private_banking"},
                headers=notifications.token("ops"),
            )
        ).json()["items"]
        return [m for m in items if m["customer_id"] == customer]

    [message] = await eventually(assigned, lambda ms: bool(ms) and ms[0]["status"] == "sent")
    assert message["template"] == "tier_customer_assigned"
    assert message["channel"] == "sms"
    assert customer in message["body"] and "Han Mei" in message["body"]
    assert any(
        customer in r.body["text"] for r in gateway.to("sms", team_mobile("private_banking"))
    )


async def test_wechat_answering_5xx_three_times_falls_back_to_one_sms(
    notifications, kafka_producer, gateway
):
    customer = new_customer()
    openid = new_openid()
    data = await known_customer(
        notifications,
        kafka_producer,
        profile(customer, preferred_channel="wechat", wechat_openid=openid),
    )
    gateway.script("wechat", openid, "5xx", "5xx", "5xx")
    await upgrade(kafka_producer, customer)

    [message] = await settled(notifications, "tier_upgrade_customer", customer_id=customer)
    assert (message["status"], message["channel"]) == ("sent", "sms")
    assert [r.behaviour for r in gateway.to("wechat", openid)] == ["5xx", "5xx", "5xx"]
    assert len(gateway.to("sms", data["mobile"])) == 1
    full = await detail(notifications, message["notification_id"])
    assert [(a["channel"], a["outcome"], a["http_status"]) for a in full["attempt_log"]] == [
        ("wechat", "transient", 502),
        ("wechat", "transient", 502),
        ("wechat", "transient", 502),
        ("sms", "delivered", 200),
    ]


async def test_the_same_event_delivered_twice_yields_one_message(
    notifications, kafka_producer, gateway
):
    customer = new_customer()
    data = await known_customer(notifications, kafka_producer, profile(customer))
    event = await upgrade(kafka_producer, customer)
    await publish(kafka_producer, TIER_CHANGED, event)  # redelivered
    # A later event on the same partition: once it is handled, so was the duplicate.
    later = await upgrade(
        kafka_producer,
        customer,
        tier="high_end",
        previous="quality",
        maintenance_team="private_banking",
    )

    sent = await settled(notifications, "tier_upgrade_customer", customer_id=customer, count=2)
    assert sorted(m["source_event_id"] for m in sent) == sorted(
        [event["event_id"], later["event_id"]]
    )
    assert len(gateway.to("sms", data["mobile"])) == 2


async def test_a_permanently_invalid_recipient_fails_at_once_and_raises_an_alert(
    notifications, kafka_producer, gateway, alert_watcher
):
    customer = new_customer()
    data = await known_customer(notifications, kafka_producer, profile(customer))
    gateway.script("sms", data["mobile"], "invalid")
    await upgrade(kafka_producer, customer)

    [message] = await settled(notifications, "tier_upgrade_customer", customer_id=customer)
    assert message["status"] == "failed"
    assert "invalid recipient" in message["reason"]
    full = await detail(notifications, message["notification_id"])
    assert [(a["outcome"], a["http_status"]) for a in full["attempt_log"]] == [("permanent", 400)]
    assert len(gateway.to("sms", data["mobile"])) == 1
    [alert] = await alert_watcher.wait_for(
        lambda r: (
            value_of(r)["data"]["details"].get("notification_id") == message["notification_id"]
        )
    )
    assert value_of(alert)["data"]["kind"] == "delivery_failed"
    assert data["mobile"] not in json.dumps(value_of(alert))  # masked


async def test_the_unique_constraint_holds_even_when_the_inbox_is_bypassed(notifications):
    # E.g. a replay after the inbox ids were purged: recording the event again adds nothing.
    customer = new_customer()
    raw = json.dumps(make_event(TIER_CHANGED, tier_changed(customer))).encode()
    event = parse_event(TIER_CHANGED, raw)
    for _ in range(2):
        async with notifications.runtime.uow() as tx:
            await record_notifications(tx, [event])
    async with notifications.runtime.sessions() as session:
        recorded = (
            await session.execute(
                select(store.notifications.c.recipient_kind, store.notifications.c.template).where(
                    store.notifications.c.source_event_id == str(event.event_id)
                )
            )
        ).all()
    assert sorted(recorded) == [
        ("customer", "tier_upgrade_customer"),
        ("department", "tier_customer_assigned"),
    ]
