"""Behaviour signals in, early-warning CallbackDue out; the dev clock drives the timers.

The module moves the service's (dev) clock forward; every expectation is computed from
the service clock, so the order of the tests does not matter.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from services.profile.domain import SHANGHAI, local_month, shift_month
from shared.contracts.topics import (
    BALANCE_CHANGED,
    COMPLAINT_UPDATED,
    CUSTOMER_ACTIVITY,
    CUSTOMER_UPDATED,
)
from shared.tables import timers
from shared.testing.drain import drained, settled
from shared.testing.kafka import TopicWatcher, header, make_event, publish, value_of
from shared.testing.services import RunningService
from shared.testing.waiting import eventually
from tests.integration.profile.conftest import data_of, for_customer, new_customer

pytestmark = pytest.mark.integration
DAY = 86400


def posting(customer: str, booked_at: datetime, delta: str = "100.00") -> dict[str, Any]:
    return make_event(
        BALANCE_CHANGED,
        {
            "customer_id": customer,
            "account_id": f"{customer}-01",
            "currency": "CNY",
            "balance": "10000.00",
            "delta": delta,
            "txn_id": uuid.uuid4().hex,
            "booked_at": booked_at.isoformat(),
        },
    )


def activity(customer: str, kind: str, at: datetime, product_type: str = "wealth") -> dict:
    return make_event(
        CUSTOMER_ACTIVITY,
        {
            "customer_id": customer,
            "activity": kind,
            "product_type": product_type,
            "product_id": "WM-2026-07",
            "at": at.isoformat(),
        },
    )


def complaint(
    customer: str, complaint_id: str, change: str = "filed", **fields: Any
) -> dict[str, Any]:
    return make_event(
        COMPLAINT_UPDATED,
        fields
        | {
            "complaint_id": complaint_id,
            "complaint_ref": f"APP-{complaint_id}",
            "customer_id": customer,
            "status": "received",
            "severity": "normal",
            "category": "fees",
            "owner_id": "E001",
            "department": "retail_banking",
            "change": change,
        },
    )


async def signals(svc: RunningService, customer: str) -> dict[str, Any]:
    response = await svc.http.get(f"/profiles/{customer}/signals", headers=svc.token("admin"))
    return response.json() if response.status_code == 200 else {}


async def transactions_recorded(svc: RunningService, customer: str) -> int:
    view = await signals(svc, customer)
    return sum(m["transactions"] for m in view.get("monthly_transactions", []))


async def quiet(svc: RunningService, callbacks: TopicWatcher) -> None:
    """Every timer due by the moved clock has fired and every callback it raised is seen:
    what to wait for before asserting that a callback did not come."""
    await settled(svc.runtime)
    await callbacks.caught_up()


def reason(customer: str, why: str):
    return lambda r: for_customer(customer)(r) and data_of(r)["reason"] == why


async def test_postings_and_activity_become_monthly_counts_rfm_and_last_activity(
    profile_svc, kafka_producer
):
    customer = new_customer()
    now = profile_svc.runtime.clock.now()
    this_month, last_month = local_month(now), shift_month(local_month(now), -1)
    mid_last_month = datetime.combine(last_month.replace(day=15), datetime.min.time(), SHANGHAI)
    events = [posting(customer, mid_last_month, "-2500.00") for _ in range(3)]
    events += [posting(customer, now - timedelta(minutes=5), "60000.00")]
    events += [activity(customer, "login", now), activity(customer, "product_view", now)]
    for event in events:
        topic = BALANCE_CHANGED if event["event_type"] == "BalanceChanged" else CUSTOMER_ACTIVITY
        await publish(kafka_producer, topic, event)
    await publish(kafka_producer, BALANCE_CHANGED, events[0])  # redelivered: counted once

    # Postings and activity arrive through different consumers: wait for both, and for the
    # redelivery after them, before reading (waiting for the activity alone once read the
    # view before the postings were in).
    await drained(profile_svc.runtime)
    view = await signals(profile_svc, customer)
    assert view["product_views"] == 1
    assert view["monthly_transactions"] == [
        {"month": last_month.strftime("%Y-%m"), "transactions": 3, "turnover_cny": "7500.00"},
        {"month": this_month.strftime("%Y-%m"), "transactions": 1, "turnover_cny": "60000.00"},
    ]
    assert view["logins"] == 1 and view["wealth_product_views"] == 1
    assert datetime.fromisoformat(view["last_activity_at"]) == now
    # 4 transactions and 67,500.00 turnover in 12 months, the latest today.
    assert view["rfm"] == {
        "recency": 5,
        "frequency": 2,
        "monetary": 3,
        "total": 10,
        "days_since_last_transaction": 0,
        "transactions_12m": 4,
        "turnover_cny_12m": "67500.00",
    }

    forbidden = await profile_svc.http.get(
        f"/profiles/{customer}/signals", headers=profile_svc.token("customer", customer_id=customer)
    )
    assert forbidden.status_code == 403


async def test_times_from_the_future_are_dead_lettered_not_taken_as_the_latest(
    profile_svc, dead_letters, kafka_producer
):
    customer = new_customer()
    now = profile_svc.runtime.clock.now()
    soon = now + timedelta(minutes=2)  # within a source system's clock skew: taken
    later = now + timedelta(hours=1)
    good = [posting(customer, soon), activity(customer, "login", soon)]
    bad = [posting(customer, later), activity(customer, "login", later)]
    for event in good + bad:
        topic = BALANCE_CHANGED if event["event_type"] == "BalanceChanged" else CUSTOMER_ACTIVITY
        await publish(kafka_producer, topic, event)

    for event, field in zip(bad, ("data.booked_at", "data.at"), strict=True):
        [letter] = await dead_letters.wait_for(
            lambda r, e=event: (
                r.key == customer.encode() and value_of(r)["event_id"] == e["event_id"]
            )
        )
        assert header(letter, "dlq.error") == f"{field}: must not be in the future"
        assert header(letter, "dlq.error_type") == "invalid_field"
    await drained(profile_svc.runtime)
    view = await signals(profile_svc, customer)
    assert datetime.fromisoformat(view["last_transaction_at"]) == soon
    assert datetime.fromisoformat(view["last_activity_at"]) == soon
    assert view["logins"] == 1
    assert await transactions_recorded(profile_svc, customer) == 1


async def test_three_days_of_wealth_views_raise_one_callback_for_the_manager(
    profile_svc, callbacks, kafka_producer
):
    customer = new_customer()
    crm = make_event(CUSTOMER_UPDATED, {"customer_id": customer, "relationship_manager_id": "E042"})
    await publish(kafka_producer, CUSTOMER_UPDATED, crm)
    await eventually(
        lambda: profile_svc.http.get(f"/profiles/{customer}", headers=profile_svc.token("admin")),
        lambda r: r.status_code == 200,
    )
    now = profile_svc.runtime.clock.now()
    views = [activity(customer, "product_view", now - timedelta(days=d)) for d in (2, 1, 0)]
    for event in views:
        await publish(kafka_producer, CUSTOMER_ACTIVITY, event)
    [record] = await callbacks.wait_for(reason(customer, "browsing_without_purchase"))
    callback = data_of(record)
    assert callback["assignee_id"] == "E042"
    assert callback["assignee_kind"] == "employee"
    assert callback["evidence"]["view_days"] == [
        (now - timedelta(days=d)).astimezone(SHANGHAI).date().isoformat() for d in (2, 1, 0)
    ]
    assert list(callback["evidence"]["wealth_views_per_day"].values()) == [1, 1, 1]
    assert value_of(record)["causation_id"] == views[2]["event_id"]

    # More views (a 4th day, duplicates) within 30 days: no second callback.
    await publish(kafka_producer, CUSTOMER_ACTIVITY, views[1])
    await publish(kafka_producer, CUSTOMER_ACTIVITY, activity(customer, "product_view", now))
    await publish(
        kafka_producer,
        CUSTOMER_ACTIVITY,
        activity(customer, "product_view", now - timedelta(days=3)),
    )
    view = await eventually(
        lambda: signals(profile_svc, customer), lambda v: v.get("wealth_product_views") == 5
    )
    assert [w["reason"] for w in view["early_warnings"]] == ["browsing_without_purchase"]


async def test_a_wealth_purchase_on_day_two_cancels_the_browsing_callback(
    profile_svc, kafka_producer
):
    customer = new_customer()
    now = profile_svc.runtime.clock.now()
    for event in (
        activity(customer, "product_view", now - timedelta(days=2)),
        activity(customer, "product_view", now - timedelta(days=1)),
        activity(customer, "purchase", now - timedelta(days=1)),
        activity(customer, "product_view", now),
        activity(customer, "product_view", now, product_type="deposit"),
    ):
        await publish(kafka_producer, CUSTOMER_ACTIVITY, event)
    view = await eventually(
        lambda: signals(profile_svc, customer), lambda v: v.get("product_views") == 4
    )
    assert view["purchases"] == 1
    assert view["early_warnings"] == []


async def inactivity_timers(svc: RunningService, complaint_id: str) -> int:
    """The complaint's post-complaint inactivity timers (a fired one is deleted)."""
    async with svc.runtime.sessions() as session:
        return int(
            await session.scalar(
                select(func.count()).where(
                    timers.c.kind == "post_complaint_inactivity", timers.c.key == complaint_id
                )
            )
            or 0
        )


async def test_dev_clock_drives_the_90_day_post_complaint_rule(
    profile_svc, callbacks, kafka_producer
):
    silent, active = new_customer(), new_customer()
    silent_complaint, active_complaint = (
        f"CMP-{uuid.uuid4().hex[:8]}",
        f"CMP-{uuid.uuid4().hex[:8]}",
    )
    await publish(kafka_producer, COMPLAINT_UPDATED, complaint(silent, silent_complaint))
    await publish(kafka_producer, COMPLAINT_UPDATED, complaint(active, active_complaint))
    # A later update of the same complaint is not a new complaint.
    await publish(
        kafka_producer, COMPLAINT_UPDATED, complaint(silent, silent_complaint, "acknowledged")
    )
    await eventually(
        lambda: signals(profile_svc, active), lambda v: v.get("last_complaint_at") is not None
    )
    await profile_svc.advance_clock(10 * DAY)  # the active customer transacts on day 10
    await publish(kafka_producer, BALANCE_CHANGED, posting(active, profile_svc.runtime.clock.now()))
    await eventually(
        lambda: signals(profile_svc, active), lambda v: v.get("last_transaction_at") is not None
    )

    assert await inactivity_timers(profile_svc, active_complaint) == 1  # pending till it fires
    await profile_svc.advance_clock(79 * DAY)
    await quiet(profile_svc, callbacks)
    assert not callbacks.matching(reason(silent, "post_complaint_inactivity"))
    await profile_svc.advance_clock(2 * DAY)
    [record] = await callbacks.wait_for(reason(silent, "post_complaint_inactivity"))
    callback = data_of(record)
    assert callback["evidence"]["complaint_id"] == silent_complaint
    assert callback["evidence"]["days_without_transaction"] >= 90
    assert callback["assignee_id"] == "customer_manager"  # no manager, no tier known
    assert callback["assignee_kind"] == "department"

    await eventually(lambda: inactivity_timers(profile_svc, active_complaint), lambda n: n == 0)
    assert (await signals(profile_svc, active))["early_warnings"] == []
    await profile_svc.advance_clock(1 * DAY)
    await quiet(profile_svc, callbacks)
    assert len(callbacks.matching(reason(silent, "post_complaint_inactivity"))) == 1


async def test_each_complaint_has_its_win_back_from_its_receipt(
    profile_svc, callbacks, kafka_producer
):
    customer = new_customer()
    first, second = f"CMP-{uuid.uuid4().hex[:8]}", f"CMP-{uuid.uuid4().hex[:8]}"
    # Received 9 days before a desk filed it: its 90 days run from the receipt.
    received = profile_svc.runtime.clock.now() - timedelta(days=9)
    await publish(
        kafka_producer,
        COMPLAINT_UPDATED,
        complaint(customer, first, received_at=received.isoformat()),
    )
    await eventually(lambda: inactivity_timers(profile_svc, first), lambda n: n == 1)
    await profile_svc.advance_clock(71 * DAY)  # day 80 since the receipt: a second complaint
    now = profile_svc.runtime.clock.now().isoformat()  # the service's, moved on by the tests
    await publish(kafka_producer, COMPLAINT_UPDATED, complaint(customer, second, received_at=now))
    await eventually(lambda: inactivity_timers(profile_svc, second), lambda n: n == 1)

    await profile_svc.advance_clock(11 * DAY)  # day 91: the first one's win-back is due
    [record] = await callbacks.wait_for(reason(customer, "post_complaint_inactivity"))
    evidence = data_of(record)["evidence"]
    assert evidence["complaint_id"] == first
    assert datetime.fromisoformat(evidence["complaint_filed_at"]) == received
    assert await inactivity_timers(profile_svc, second) == 1  # its own still to come


async def test_new_customer_without_activity_in_the_first_month(
    profile_svc, callbacks, kafka_producer
):
    idle, busy = new_customer(), new_customer()
    onboarded = profile_svc.runtime.clock.now() - timedelta(hours=2)
    for customer in (idle, busy):
        await publish(
            kafka_producer,
            CUSTOMER_UPDATED,
            make_event(
                CUSTOMER_UPDATED,
                {"customer_id": customer, "onboarded_at": onboarded.isoformat()},
            ),
        )
    await publish(
        kafka_producer,
        CUSTOMER_ACTIVITY,
        activity(busy, "login", onboarded + timedelta(hours=1), product_type="deposit"),
    )
    await eventually(lambda: signals(profile_svc, busy), lambda v: v.get("logins") == 1)
    await eventually(
        lambda: profile_svc.http.get(f"/profiles/{idle}", headers=profile_svc.token("admin")),
        lambda r: r.status_code == 200 and r.json()["onboarded_at"] is not None,
    )
    await profile_svc.advance_clock(32 * DAY)
    [record] = await callbacks.wait_for(reason(idle, "new_customer_inactive"))
    assert data_of(record)["evidence"]["activities_since_onboarding"] == 0
    await profile_svc.advance_clock(1 * DAY)
    await quiet(profile_svc, callbacks)
    assert not callbacks.matching(reason(busy, "new_customer_inactive"))


async def test_a_corrected_onboarding_date_moves_the_first_month_check(
    profile_svc, callbacks, kafka_producer
):
    customer = new_customer()
    # CRM's own offset (+08:00); the stored date reads back in UTC. Each date lands in a
    # transaction of its own: the correction finds the first date's check in the database.
    first = profile_svc.runtime.clock.now().astimezone(SHANGHAI)
    corrected = first + timedelta(days=10)
    for onboarded in (first, corrected):
        await publish(
            kafka_producer,
            CUSTOMER_UPDATED,
            make_event(
                CUSTOMER_UPDATED, {"customer_id": customer, "onboarded_at": onboarded.isoformat()}
            ),
        )
        await eventually(
            lambda: profile_svc.http.get(
                f"/profiles/{customer}", headers=profile_svc.token("admin")
            ),
            lambda r, at=onboarded: (
                r.status_code == 200 and datetime.fromisoformat(r.json()["onboarded_at"]) == at
            ),
        )
    await profile_svc.advance_clock(32 * DAY)  # the first date's check would be due by now
    await quiet(profile_svc, callbacks)
    assert not callbacks.matching(reason(customer, "new_customer_inactive"))
    await profile_svc.advance_clock(10 * DAY)
    [record] = await callbacks.wait_for(reason(customer, "new_customer_inactive"))
    assert data_of(record)["evidence"]["activities_since_onboarding"] == 0


async def test_daily_sweep_raises_transaction_decline_once(profile_svc, callbacks, kafka_producer):
    declining, steady = new_customer(), new_customer()
    month = local_month(profile_svc.runtime.clock.now() + timedelta(days=1))

    def mid(months_back: int) -> datetime:
        first = shift_month(month, -months_back)
        return datetime.combine(first.replace(day=15), datetime.min.time(), SHANGHAI)

    plan = {declining: (10, 7), steady: (10, 8)}  # (earlier, recent): 70% fires, 80% not
    for customer, (earlier, recent) in plan.items():
        for _ in range(earlier):
            await publish(kafka_producer, BALANCE_CHANGED, posting(customer, mid(9)))
        for _ in range(recent):
            await publish(kafka_producer, BALANCE_CHANGED, posting(customer, mid(3)))
    for customer, (earlier, recent) in plan.items():
        await eventually(
            lambda c=customer: transactions_recorded(profile_svc, c),  # type: ignore[misc]
            lambda n, total=earlier + recent: n == total,  # type: ignore[misc]
        )
    await profile_svc.advance_clock(1 * DAY)
    [record] = await callbacks.wait_for(reason(declining, "transaction_decline"))
    evidence = data_of(record)["evidence"]
    assert (evidence["recent_transactions"], evidence["earlier_transactions"]) == (7, 10)
    assert evidence["ratio"] == "0.7000"
    await profile_svc.advance_clock(1 * DAY)  # the next sweep: same customer, no second callback
    await quiet(profile_svc, callbacks)
    assert len(callbacks.matching(reason(declining, "transaction_decline"))) == 1
    assert not callbacks.matching(reason(steady, "transaction_decline"))


async def test_known_customer_without_behaviour_has_empty_signals(
    profile_svc, profile_changes, kafka_producer
):
    customer = new_customer()
    await publish(
        kafka_producer, CUSTOMER_UPDATED, make_event(CUSTOMER_UPDATED, {"customer_id": customer})
    )
    await profile_changes.wait_for(for_customer(customer))
    view = await signals(profile_svc, customer)
    assert view["monthly_transactions"] == [] and view["early_warnings"] == []
    assert view["rfm"]["total"] == 3 and view["last_activity_at"] is None
