"""A stream of balance postings for many customers yields exactly the expected tier changes,
even delivered twice and with the service restarted mid-stream; bad events are dead-lettered
while processing carries on."""

from __future__ import annotations

import random
import uuid
from decimal import Decimal
from typing import Any

import pytest

from services.tiering.app import SPEC
from shared.contracts.topics import BALANCE_CHANGED, TIER_CHANGED, dead_letter_topic
from shared.testing.drain import drained
from shared.testing.kafka import TopicWatcher, header, make_event, publish, value_of
from shared.testing.services import running_service, service_settings

pytestmark = pytest.mark.integration

USD_RATE = Decimal("7.10")  # the default TIERING_FX_RATES value for USD


def expected_tier(total: Decimal) -> str:
    """Written out again on purpose: the test must not trust the code it checks."""
    if total >= 3_000_000:
        return "high_end"
    if total >= 500_000:
        return "quality"
    if total >= 50_000:
        return "potential"
    return "ordinary"


def build_stream(run: str, customers: int = 40) -> list[dict[str, Any]]:
    """Postings with increasing sequence per account, some delivered out of order."""
    rng = random.Random(run)
    events = []
    for c in range(customers):
        customer = f"S{run}-{c:03d}"
        for a in range(rng.randint(1, 3)):
            account = f"{customer}-{a}"
            currency = "USD" if a == 2 else "CNY"
            postings = []
            for seq in range(1, rng.randint(2, 6) + 1):
                balance = Decimal(rng.choice([1_000, 30_000, 60_000, 450_000, 700_000, 3_200_000]))
                postings.append(
                    make_event(
                        BALANCE_CHANGED,
                        {
                            "customer_id": customer,
                            "account_id": account,
                            "currency": currency,
                            "balance": f"{balance:.2f}",
                            "delta": "0.00",
                            "txn_id": f"{account}-{seq}",
                            "account_seq": seq,
                        },
                    )
                )
            if len(postings) > 2 and rng.random() < 0.5:
                postings[-1], postings[-2] = postings[-2], postings[-1]  # late arrival
            events.extend(postings)
    return events


def expected_changes(events: list[dict[str, Any]]) -> dict[str, list[tuple[Any, str, str]]]:
    """(previous, new tier, total) per customer, replaying the stream in publish order."""
    latest: dict[str, dict[str, tuple[int, Decimal]]] = {}
    tiers: dict[str, str | None] = {}
    changes: dict[str, list[tuple[Any, str, str]]] = {}
    for event in events:
        d = event["data"]
        accounts = latest.setdefault(d["customer_id"], {})
        seq = d["account_seq"]
        if d["account_id"] in accounts and accounts[d["account_id"]][0] >= seq:
            continue
        rate = USD_RATE if d["currency"] == "USD" else Decimal(1)
        accounts[d["account_id"]] = (seq, Decimal(d["balance"]) * rate)
        total = sum((v for _, v in accounts.values()), Decimal(0))
        tier = expected_tier(total)
        previous = tiers.get(d["customer_id"])
        if tier != previous:
            changes.setdefault(d["customer_id"], []).append((previous, tier, f"{total:.2f}"))
            tiers[d["customer_id"]] = tier
    return changes


async def assert_changed_once(
    changes: TopicWatcher, events: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    """The topic holds exactly the expected changes of these customers, none doubled."""
    ours = {e["data"]["customer_id"].encode() for e in events}
    wanted = sum(len(v) for v in expected.values())
    await changes.wait_for(lambda r: r.key in ours, count=wanted)
    await changes.caught_up()  # a change doubled would be on the topic by now
    records = changes.matching(lambda r: r.key in ours)
    actual: dict[str, list[tuple[Any, str, str]]] = {}
    for record in records:
        data = value_of(record)["data"]
        actual.setdefault(data["customer_id"], []).append(
            (data["previous_tier"], data["tier"], data["total_balance"])
        )
    assert actual == expected
    assert len(records) == wanted  # nothing doubled


async def test_stream_twice_with_restart_yields_exactly_the_expected_changes(infra, kafka_producer):
    run = uuid.uuid4().hex[:6]
    events = build_stream(run)
    expected = expected_changes(events)
    customer = events[0]["data"]["customer_id"]
    poison = [
        make_event(
            BALANCE_CHANGED,
            {"customer_id": customer, "account_id": f"{customer}-x", "currency": "XYZ",
             "balance": "10.00", "delta": "0", "txn_id": "bad-ccy", "account_seq": 1},
        ),
        make_event(
            BALANCE_CHANGED,
            {"customer_id": customer, "account_id": f"{customer}-y", "currency": "CNY",
             "balance": 10.5, "delta": "0", "txn_id": "bad-float", "account_seq": 1},
        ),
    ]  # fmt: skip
    settings = service_settings(SPEC, infra)
    changes = await TopicWatcher(infra.bootstrap_servers, TIER_CHANGED).start()
    letters = await TopicWatcher(infra.bootstrap_servers, dead_letter_topic("tiering")).start()
    half = len(events) // 2
    try:
        async with running_service(SPEC, settings):
            for event in events[:half]:
                await publish(kafka_producer, BALANCE_CHANGED, event)
            # stop while the first half is still being consumed
        async with running_service(SPEC, settings) as svc:
            for event in [*events[half : poison_at(events)], *poison, *events]:
                await publish(kafka_producer, BALANCE_CHANGED, event)
            await drained(svc.runtime)

            await assert_changed_once(changes, events, expected)

            bad = await letters.wait_for(lambda r: r.key == customer.encode(), count=2)
            reasons = {header(r, "dlq.error_type"): header(r, "dlq.error") for r in bad}
            assert "data.currency" in reasons["unknown_currency"]
            assert "'XYZ'" in reasons["unknown_currency"]
            assert "data.balance" in reasons["schema_invalid"]

            # The API agrees with the stream for every customer.
            staff = svc.token("staff", employee_id="E1")
            for customer_id, history in expected.items():
                response = await svc.http.get(f"/customers/{customer_id}/tier", headers=staff)
                assert response.json()["tier"] == history[-1][1], customer_id
                response = await svc.http.get(
                    f"/customers/{customer_id}/tier/history", headers=staff
                )
                assert len(response.json()["items"]) == len(history)
    finally:
        await changes.stop()
        await letters.stop()


def poison_at(events: list[dict[str, Any]]) -> int:
    """Bad events go in the middle of the second half."""
    return len(events) // 2 + len(events) // 4


async def test_two_consumers_in_one_process_share_the_partitions(infra, kafka_producer):
    """CONSUMER_CONCURRENCY=2: both members of the group own partitions, and the stream —
    every event delivered twice — still yields each expected change exactly once."""
    run = uuid.uuid4().hex[:6]
    events = build_stream(run, customers=30)
    expected = expected_changes(events)
    settings = service_settings(
        SPEC, infra, schema=infra.new_schema("tiering_pair"), consumer_concurrency=2
    )
    changes = await TopicWatcher(infra.bootstrap_servers, TIER_CHANGED).start()
    try:
        async with running_service(SPEC, settings) as svc:
            members = svc.runtime.consumers
            assert len(members) == 2 and all(m.assigned for m in members)
            assert {m.member_name for m in members} == {"tiering.balances", "tiering.balances#1"}
            for event in [*events, *events]:
                await publish(kafka_producer, BALANCE_CHANGED, event)
            await drained(svc.runtime)

            await assert_changed_once(changes, events, expected)
    finally:
        await changes.stop()
