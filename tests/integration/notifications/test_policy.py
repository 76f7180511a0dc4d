"""Delivery policy on the real stack: quiet hours, retries, caps, consent, unknown customers."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from services.notifications import store
from services.notifications.domain import BANK_TZ
from shared.clock import DevClock
from shared.contracts.topics import COMPLAINT_UPDATED
from shared.testing.kafka import make_event, publish, value_of
from shared.testing.waiting import eventually
from tests.integration.notifications.conftest import DAILY_CAP
from tests.integration.notifications.support import (
    detail,
    known_customer,
    messages,
    new_customer,
    new_openid,
    profile,
    settled,
    upgrade,
)

pytestmark = pytest.mark.integration


def dev_clock(svc) -> DevClock:
    clock = svc.runtime.clock
    assert isinstance(clock, DevClock)
    return clock


def advance_to(svc, hour: int) -> datetime:
    """Move the service clock forward to the next `hour`:00 in Shanghai."""
    clock = dev_clock(svc)
    now = clock.now().astimezone(BANK_TZ)
    target = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if target <= now:
        target += timedelta(days=1)
    clock.advance((target - now).total_seconds())
    return target


async def test_a_quiet_hour_message_is_sent_when_the_clock_reaches_0800(
    notifications, kafka_producer, gateway
):
    customer = new_customer()
    data = await known_customer(notifications, kafka_producer, profile(customer))  # 21:00-08:00
    eleven_pm = advance_to(notifications, 23)
    await upgrade(kafka_producer, customer)

    async def deferred() -> list[dict[str, Any]]:
        items = await messages(notifications, customer_id=customer)
        return [m for m in items if m["deliver_after"]]

    [message] = await eventually(deferred, bool)
    eight_am = (eleven_pm + timedelta(days=1)).replace(hour=8)
    assert message["status"] == "queued"
    assert datetime.fromisoformat(message["deliver_after"]) == eight_am
    assert message["reason"].startswith("quiet_hours")
    assert gateway.to("sms", data["mobile"]) == []

    advance_to(notifications, 8)
    [sent] = await settled(notifications, "tier_upgrade_customer", customer_id=customer)
    assert sent["status"] == "sent"
    assert datetime.fromisoformat(sent["sent_at"]) >= eight_am
    assert len(gateway.to("sms", data["mobile"])) == 1


async def test_staff_messages_ignore_quiet_hours(notifications, kafka_producer, gateway):
    # The duty contact of the new team hears about the customer at once, whatever the hour.
    customer = new_customer()
    await known_customer(
        notifications,
        kafka_producer,
        profile(customer, quiet_hours={"start": "00:00", "end": "23:59"}),
    )
    await upgrade(kafka_producer, customer)

    async def assigned() -> list[dict[str, Any]]:
        response = await notifications.http.get(
            "/notifications",
            params={"department_id": "wealth_team"},
            headers=notifications.token("ops"),
        )
        return [m for m in response.json()["items"] if m["customer_id"] == customer]

    [staff_message] = await eventually(assigned, lambda ms: bool(ms) and ms[0]["status"] == "sent")
    assert staff_message["urgent"] is True
    # The customer's message is deferred by its own delivery timer, which another timer
    # worker may run after the staff message was sent.
    [customer_message] = await eventually(
        lambda: messages(notifications, customer_id=customer),
        lambda ms: bool(ms) and ms[0]["deliver_after"] is not None,
    )
    assert customer_message["status"] == "queued"


async def test_a_timeout_is_retried_and_then_delivered(notifications, kafka_producer, gateway):
    customer = new_customer()
    data = await known_customer(notifications, kafka_producer, profile(customer))
    gateway.script("sms", data["mobile"], "timeout")
    await upgrade(kafka_producer, customer)

    [message] = await settled(notifications, "tier_upgrade_customer", customer_id=customer)
    assert message["status"] == "sent"
    full = await detail(notifications, message["notification_id"])
    assert [(a["outcome"], a["error"]) for a in full["attempt_log"]] == [
        ("transient", "timeout"),
        ("delivered", None),
    ]


async def test_a_provider_that_stays_down_fails_the_message_and_raises_provider_down(
    notifications, kafka_producer, gateway, alert_watcher, status_watcher
):
    customer = new_customer()
    data = await known_customer(notifications, kafka_producer, profile(customer))
    gateway.script("sms", data["mobile"], "5xx", "5xx", "5xx")
    await upgrade(kafka_producer, customer)

    [message] = await settled(notifications, "tier_upgrade_customer", customer_id=customer)
    assert message["status"] == "failed"
    assert len(gateway.to("sms", data["mobile"])) == 3
    [alert] = await alert_watcher.wait_for(
        lambda r: (
            value_of(r)["data"]["details"].get("notification_id") == message["notification_id"]
        )
    )
    assert value_of(alert)["data"]["kind"] == "provider_down"
    await status_watcher.wait_for(
        lambda r: (
            value_of(r)["data"]["notification_id"] == message["notification_id"]
            and value_of(r)["data"]["status"] == "failed"
        )
    )


async def test_an_expired_wechat_token_is_refreshed_and_the_message_still_goes(
    notifications, kafka_producer, gateway
):
    first, second = new_customer(), new_customer()
    openids = {first: new_openid(), second: new_openid()}
    for customer in (first, second):
        await known_customer(
            notifications,
            kafka_producer,
            profile(customer, preferred_channel="wechat", wechat_openid=openids[customer]),
        )
    await upgrade(kafka_producer, first)
    await settled(notifications, "tier_upgrade_customer", customer_id=first)
    fetched = gateway.token_fetches

    gateway.script("wechat", openids[second], "expire_token")
    await upgrade(kafka_producer, second)
    [message] = await settled(notifications, "tier_upgrade_customer", customer_id=second)
    assert (message["status"], message["channel"]) == ("sent", "wechat")
    assert gateway.token_fetches == fetched + 1
    assert [r.behaviour for r in gateway.to("wechat", openids[second])] == ["expire_token", "ok"]


async def test_the_token_is_cached_between_messages(notifications, kafka_producer, gateway):
    customer = new_customer()
    await known_customer(
        notifications,
        kafka_producer,
        profile(customer, preferred_channel="wechat", wechat_openid=new_openid()),
    )
    await upgrade(kafka_producer, customer)
    await settled(notifications, "tier_upgrade_customer", customer_id=customer)
    fetched = gateway.token_fetches
    await upgrade(
        kafka_producer,
        customer,
        tier="high_end",
        previous="quality",
        maintenance_team="private_banking",
    )
    await settled(notifications, "tier_upgrade_customer", customer_id=customer, count=2)
    assert gateway.token_fetches == fetched


async def test_the_daily_cap_suppresses_non_urgent_messages_beyond_it(
    notifications, kafka_producer, gateway
):
    customer = new_customer()
    data = await known_customer(notifications, kafka_producer, profile(customer))
    for _ in range(DAILY_CAP + 1):
        await upgrade(kafka_producer, customer)

    sent = await settled(
        notifications, "tier_upgrade_customer", customer_id=customer, count=DAILY_CAP + 1
    )
    assert sorted(m["status"] for m in sent) == ["sent"] * DAILY_CAP + ["suppressed"]
    [capped] = [m for m in sent if m["status"] == "suppressed"]
    assert capped["reason"].startswith("daily_cap")
    assert len(gateway.to("sms", data["mobile"])) == DAILY_CAP


async def test_a_customer_unknown_for_the_whole_grace_period_is_suppressed(
    notifications, kafka_producer
):
    customer = new_customer()
    await upgrade(kafka_producer, customer)
    await wait_rescheduled(notifications, customer)
    dev_clock(notifications).advance(61)  # past the 60 s grace of the test settings

    [message] = await settled(notifications, "tier_upgrade_customer", customer_id=customer)
    assert message["status"] == "suppressed"
    assert message["reason"].startswith("unknown_recipient")


async def test_a_profile_arriving_after_the_event_still_gets_the_message(
    notifications, kafka_producer, gateway
):
    customer = new_customer()
    await upgrade(kafka_producer, customer)
    await wait_rescheduled(notifications, customer)
    data = await known_customer(notifications, kafka_producer, profile(customer))
    dev_clock(notifications).advance(5)  # the next look, well within the 60 s grace

    [message] = await settled(notifications, "tier_upgrade_customer", customer_id=customer)
    assert message["status"] == "sent"
    assert len(gateway.to("sms", data["mobile"])) == 1


async def wait_rescheduled(svc, customer: str) -> None:
    """Wait until delivery found no profile and put the message back to wait for one."""

    async def seq() -> int:
        async with svc.runtime.sessions() as session:
            value = await session.scalar(
                select(store.notifications.c.timer_seq).where(
                    store.notifications.c.customer_id == customer,
                    # not the maintenance team's message about the same upgrade
                    store.notifications.c.template == "tier_upgrade_customer",
                )
            )
        return int(value or 0)

    await eventually(seq, lambda n: n >= 1)


async def test_a_marketing_template_needs_marketing_consent(
    notifications, kafka_producer, status_watcher
):
    admin = notifications.token("admin")
    key = "complaint_resolved_customer"
    original = (await notifications.http.get(f"/templates/{key}", headers=admin)).json()
    edited = {"category": "marketing", "bodies": original["bodies"]}
    assert (
        await notifications.http.put(f"/templates/{key}", json=edited, headers=admin)
    ).status_code == 200
    try:
        customer = new_customer()
        await known_customer(notifications, kafka_producer, profile(customer))
        resolved = {
            "complaint_id": f"CMP-{customer}",
            "complaint_ref": "APP-1",
            "customer_id": customer,
            "status": "resolved",
            "severity": "normal",
            "category": "fees",
            "owner_id": "E001",
            "department": "retail_banking",
            "change": "resolved",
        }
        await publish(kafka_producer, COMPLAINT_UPDATED, make_event(COMPLAINT_UPDATED, resolved))
        [message] = await settled(notifications, key, customer_id=customer)
        assert (message["status"], message["reason"]) == ("suppressed", "no_marketing_consent")
        assert message["category"] == "marketing"
        await status_watcher.wait_for(
            lambda r: (
                value_of(r)["data"]["notification_id"] == message["notification_id"]
                and value_of(r)["data"]["status"] == "suppressed"
            )
        )
    finally:
        restore = {"category": original["category"], "bodies": original["bodies"]}
        await notifications.http.put(f"/templates/{key}", json=restore, headers=admin)


async def test_a_hanging_provider_does_not_hold_up_other_recipients(
    notifications, kafka_producer, gateway
):
    stuck, other = new_customer(), new_customer()
    openid = new_openid()
    stuck_profile = await known_customer(
        notifications,
        kafka_producer,
        profile(stuck, preferred_channel="wechat", wechat_openid=openid),
    )
    await known_customer(notifications, kafka_producer, profile(other))
    gateway.script("wechat", openid, "timeout", "timeout", "timeout")
    gateway.script("sms", stuck_profile["mobile"], "5xx", "5xx", "5xx")
    await upgrade(kafka_producer, stuck)
    await upgrade(kafka_producer, other)

    [sent] = await settled(notifications, "tier_upgrade_customer", customer_id=other)
    assert sent["status"] == "sent"

    [failed] = await settled(notifications, "tier_upgrade_customer", customer_id=stuck)
    assert failed["status"] == "failed"
    full = await detail(notifications, failed["notification_id"])
    # The other customer's message went out while this one was still retrying behind its
    # timeouts (read from the times, not from a status at one moment: a slow machine).
    last_attempt = full["attempt_log"][-1]
    assert datetime.fromisoformat(sent["sent_at"]) < datetime.fromisoformat(
        last_attempt["finished_at"]
    )
    assert [(a["channel"], a["error"]) for a in full["attempt_log"]] == [
        ("wechat", "timeout"),
        ("wechat", "timeout"),
        ("wechat", "timeout"),
        ("sms", "gateway unavailable"),
        ("sms", "gateway unavailable"),
        ("sms", "gateway unavailable"),
    ]


async def test_deliveries_taking_cap_slots_of_the_same_customers_do_not_deadlock(notifications):
    """Two delivery workers (the default) take daily-cap slots for overlapping customers.
    One holds customer A's slot row and then wants B's, while the other asks for B and A:
    asked in that order it would lock B and wait for A, a deadlock; rows are taken in
    customer order instead, so it waits for A holding nothing."""
    sessions = notifications.runtime.sessions
    day = date(2026, 12, 1)
    a, b = "CAPLOCK-A", "CAPLOCK-B"
    async with sessions() as first, sessions() as second:
        async with first.begin():
            assert await store.take_daily_slots(first, [a], day, cap=5) == {a}
            other = asyncio.create_task(_in_transaction(second, [b, a], day))

            async def waiting() -> int:  # the other's INSERT waits for a row lock
                async with sessions() as probe:
                    return int(
                        await probe.scalar(
                            text(
                                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type "
                                "= 'Lock' AND query LIKE 'INSERT INTO daily_counts%'"
                            )
                        )
                        or 0
                    )

            await eventually(waiting, lambda n: n >= 1, timeout=10)
            assert await store.take_daily_slots(first, [b], day, cap=5) == {b}
        assert await asyncio.wait_for(other, timeout=10) == {a, b}


async def _in_transaction(session: Any, customers: list[str], day: date) -> set[str]:
    async with session.begin():
        return await store.take_daily_slots(session, customers, day, cap=5)
