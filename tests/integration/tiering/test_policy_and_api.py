"""Tier policy (validation, re-evaluation sweep, downgrade grace on the dev clock) and the API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from services.tiering.app import SPEC
from shared.contracts.topics import BALANCE_CHANGED, TIER_CHANGED, dead_letter_topic
from shared.testing.drain import drained
from shared.testing.kafka import TopicWatcher, header, make_event, publish, value_of
from shared.testing.services import RunningService, running_service, service_settings
from shared.testing.waiting import eventually

pytestmark = pytest.mark.integration

DEFAULT_POLICY = {
    "potential_from": "50000.00",
    "quality_from": "500000.00",
    "high_end_from": "3000000.00",
    "basis": "balance",
    "adb_days": 30,
    "downgrade_grace_days": 0,
}


@pytest.fixture(scope="module")
async def tiering(infra) -> AsyncIterator[RunningService]:
    async with running_service(SPEC, service_settings(SPEC, infra)) as svc:
        yield svc


@pytest.fixture
async def tier_changes(infra) -> AsyncIterator[TopicWatcher]:
    watcher = await TopicWatcher(infra.bootstrap_servers, TIER_CHANGED).start()
    yield watcher
    await watcher.stop()


def posting(
    customer: str, balance: str, seq: int, account: str = "01", currency: str = "CNY"
) -> dict[str, Any]:
    return make_event(
        BALANCE_CHANGED,
        {
            "customer_id": customer,
            "account_id": f"{customer}-{account}",
            "currency": currency,
            "balance": balance,
            "delta": "0",
            "txn_id": f"{customer}-{seq}",
            "account_seq": seq,
        },
    )


async def policy_of(svc: RunningService) -> dict[str, Any]:
    response = await svc.http.get("/tiers/policy", headers=svc.token("ops"))
    return response.json()  # type: ignore[no-any-return]


def new_customer() -> str:
    return f"T-{uuid.uuid4().hex[:10]}"


async def put_policy(svc: RunningService, **changes: Any):
    return await svc.http.put(
        "/tiers/policy", json=DEFAULT_POLICY | changes, headers=svc.token("admin")
    )


async def apply_policy(svc: RunningService, **changes: Any) -> None:
    """Put the default policy with these changes and wait until its re-evaluation is done."""
    assert (await put_policy(svc, **changes)).status_code == 200
    await eventually(lambda: policy_of(svc), lambda p: not p["reevaluation_pending"])


async def test_policy_validation_names_the_problem(tiering):
    response = await put_policy(tiering, quality_from="40000.00")
    assert response.status_code == 422
    assert "strictly increasing" in response.json()["detail"]
    response = await put_policy(tiering, potential_from=50000.5)
    assert response.status_code == 422
    assert "body.potential_from" in response.json()["detail"]
    response = await put_policy(tiering, high_end_from="10000000000000000")  # 17 digits
    assert response.status_code == 422
    assert "body.high_end_from" in response.json()["detail"]
    response = await tiering.http.put(
        "/tiers/policy", json=DEFAULT_POLICY, headers=tiering.token("ops")
    )
    assert response.status_code == 403


async def test_downgrade_waits_for_the_grace_period_on_the_dev_clock(
    tiering, kafka_producer, tier_changes
):
    await apply_policy(tiering, downgrade_grace_days=3)
    customer = new_customer()
    key = customer.encode()
    staff = tiering.token("staff", employee_id="E1")

    async def tier_now() -> dict[str, Any]:
        return (await tiering.http.get(f"/customers/{customer}/tier", headers=staff)).json()

    try:
        await publish(kafka_producer, BALANCE_CHANGED, posting(customer, "600000.00", 1))
        await tier_changes.wait_for(lambda r: r.key == key)
        await publish(kafka_producer, BALANCE_CHANGED, posting(customer, "100000.00", 2))
        body = await eventually(tier_now, lambda b: b.get("downgrade_grace_until") is not None)
        assert body["tier"] == "quality"  # still quality while the grace period runs
        assert body["total_balance"] == "100000.00"
        await drained(tiering.runtime)
        await tier_changes.caught_up()
        assert len(tier_changes.matching(lambda r: r.key == key)) == 1

        await tiering.advance_clock(3 * 86400 + 1)
        records = await tier_changes.wait_for(lambda r: r.key == key, count=2)
        downgrade = value_of(records[1])["data"]
        assert (downgrade["previous_tier"], downgrade["tier"], downgrade["direction"]) == (
            "quality",
            "potential",
            "downgrade",
        )
        history = await tiering.http.get(f"/customers/{customer}/tier/history", headers=staff)
        causes = [h["cause"] for h in history.json()["items"]]
        assert causes == ["balance_changed", "grace_expired"]
    finally:
        await apply_policy(tiering)


async def test_policy_change_re_evaluates_existing_customers(tiering, kafka_producer, tier_changes):
    customer = new_customer()
    key = customer.encode()
    await publish(kafka_producer, BALANCE_CHANGED, posting(customer, "60000.00", 1))
    [first] = await tier_changes.wait_for(lambda r: r.key == key)
    assert value_of(first)["data"]["tier"] == "potential"
    try:
        response = await put_policy(tiering, potential_from="70000.00")
        assert response.status_code == 200
        assert response.json()["potential_from"] == "70000.00"
        records = await tier_changes.wait_for(lambda r: r.key == key, count=2)
        data = value_of(records[1])["data"]
        assert (data["previous_tier"], data["tier"]) == ("potential", "ordinary")
    finally:
        await apply_policy(tiering)


async def test_on_the_average_daily_balance_basis_a_posting_and_the_daily_sweep_decide_by_the_mean(
    tiering, kafka_producer, tier_changes
):
    """The policy comes with the books it decides on (one statement), then the closing
    totals its basis needs: 600,000 posted today is a two-day mean of 300,000 (potential);
    a day later, carried forward, the daily sweep finds a mean of 600,000 (quality)."""
    await apply_policy(tiering, basis="average_daily_balance", adb_days=2)
    customer = new_customer()
    key = customer.encode()
    try:
        await publish(kafka_producer, BALANCE_CHANGED, posting(customer, "600000.00", 1))
        [first] = await tier_changes.wait_for(lambda r: r.key == key)
        data = value_of(first)["data"]
        assert (data["tier"], data["total_balance"], data["basis"]) == (
            "potential",
            "300000.00",
            "average_daily_balance",
        )
        await tiering.advance_clock(86400)
        records = await tier_changes.wait_for(lambda r: r.key == key, count=2)
        data = value_of(records[1])["data"]
        assert (data["previous_tier"], data["tier"], data["total_balance"]) == (
            "potential",
            "quality",
            "600000.00",
        )
    finally:
        await apply_policy(tiering)


async def test_distribution_and_access_rules(tiering, kafka_producer, tier_changes):
    customer = new_customer()
    await publish(kafka_producer, BALANCE_CHANGED, posting(customer, "3000000.00", 1))
    await tier_changes.wait_for(lambda r: r.key == customer.encode())

    ops = tiering.token("ops")
    response = await tiering.http.get("/tiers/distribution", headers=ops)
    assert response.status_code == 200
    items = {i["tier"]: i for i in response.json()["items"]}
    assert list(items) == ["ordinary", "potential", "quality", "high_end"]
    assert items["high_end"]["customers"] >= 1
    staff = tiering.token("staff", employee_id="E1")
    assert (await tiering.http.get("/tiers/distribution", headers=staff)).status_code == 403

    own = tiering.token("customer", customer_id=customer)
    response = await tiering.http.get(f"/customers/{customer}/tier", headers=own)
    assert response.status_code == 200
    assert response.json()["maintenance_team"] == "private_banking"
    assert response.json()["total_balance"] == "3000000.00"

    missing = await tiering.http.get("/customers/nobody/tier", headers=staff)
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    policy = await tiering.http.get("/tiers/policy", headers=staff)
    assert policy.json()["high_end_from"] == "3000000.00"


async def test_text_postgres_cannot_store_is_a_422_not_a_500(tiering):
    staff = tiering.token("staff", employee_id="E1")
    response = await tiering.http.get("/customers/C%00NUL/tier", headers=staff)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_a_tiers_total_beyond_one_amounts_16_digits_is_reported(
    tiering, kafka_producer, tier_changes
):
    # Each balance fits an amount (and NUMERIC(18, 2)); their sum does not, nor need it.
    richest = {new_customer().encode(): None for _ in range(2)}
    for key in richest:
        await publish(
            kafka_producer, BALANCE_CHANGED, posting(key.decode(), "9000000000000000.00", 1)
        )
    await tier_changes.wait_for(lambda r: r.key in richest, count=2)
    response = await tiering.http.get("/tiers/distribution", headers=tiering.token("ops"))
    assert response.status_code == 200, response.text
    [high_end] = [i for i in response.json()["items"] if i["tier"] == "high_end"]
    assert Decimal(high_end["total_balance"]) >= Decimal("18000000000000000.00")


async def test_a_balance_whose_cny_the_ledger_cannot_hold_is_dead_lettered(
    tiering, infra, kafka_producer
):
    customer = new_customer()
    dead_letters = await TopicWatcher(infra.bootstrap_servers, dead_letter_topic("tiering")).start()
    try:
        # A second account tips the customer's total over 1E+16; a USD account's own CNY
        # (2E+15 at 7.10) is over it too. Each balance fits an amount of the contract.
        over_total = posting(customer, "2000000000000000.00", 1, account="02")
        over_own = posting(customer, "2000000000000000.00", 1, account="03", currency="USD")
        stream = [
            posting(customer, "9000000000000000.00", 1),
            over_total,
            over_own,
            posting(customer, "100000000000000.00", 2, account="02"),  # fits: taken
        ]
        for event in stream:
            await publish(kafka_producer, BALANCE_CHANGED, event)

        for event in (over_total, over_own):
            [letter] = await dead_letters.wait_for(
                lambda r, e=event: (
                    r.key == customer.encode() and value_of(r)["event_id"] == e["event_id"]
                )
            )
            assert header(letter, "dlq.error_type") == "invalid_field"
            assert header(letter, "dlq.error") == (
                "data.balance: in CNY, it or the customer's total reaches 1E+16"
            )
        await drained(tiering.runtime)
        response = await tiering.http.get(
            f"/customers/{customer}/tier", headers=tiering.token("staff", employee_id="E1")
        )
        assert response.status_code == 200, response.text
        assert Decimal(response.json()["total_balance"]) == Decimal("9100000000000000.00")
    finally:
        await dead_letters.stop()


async def test_http_readiness_is_the_databases(tiering):
    response = await tiering.http.get("/readyz/http")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"database": True}}
    whole = await tiering.http.get("/readyz")
    assert set(whole.json()["checks"]) == {"database", "broker", "consumers"}
