"""CRM updates and tier changes in, ProfileChanged out; GET with masking; dead letters."""

from __future__ import annotations

import pytest

from shared.contracts.topics import CUSTOMER_UPDATED, TIER_CHANGED
from shared.testing.kafka import header, make_event, publish, value_of
from tests.integration.profile.conftest import at, data_of, for_customer, new_customer

pytestmark = pytest.mark.integration


def crm(customer: str, occurred: str, **fields: object) -> dict[str, object]:
    return make_event(
        CUSTOMER_UPDATED, {"customer_id": customer, **fields}, occurred_at=at(occurred)
    )


async def test_crm_update_builds_profile_and_emits_snapshot(
    profile_svc, profile_changes, kafka_producer
):
    customer = new_customer()
    event = crm(
        customer,
        "2026-11-01T10:00:00",
        name="王芳",
        mobile="138 0013 8000",
        wechat_openid="oWx1234567890abc",
        preferred_channel="wechat",
        consents={"marketing": True},
        relationship_manager_id="E042",
    )
    await publish(kafka_producer, CUSTOMER_UPDATED, event)
    [record] = await profile_changes.wait_for(for_customer(customer))
    assert value_of(record)["causation_id"] == event["event_id"]
    assert data_of(record) == {
        "customer_id": customer,
        "name": "王芳",
        "mobile": "+8613800138000",
        "wechat_openid": "oWx1234567890abc",
        "language": "zh-CN",
        "preferred_channel": "wechat",
        "consents": {"service": True, "marketing": True},
        "quiet_hours": {"start": "21:00", "end": "08:00"},
        "tier": None,
        "maintenance_team": None,
        "relationship_manager_id": "E042",
        "branch_id": None,
    }

    own = await profile_svc.http.get(
        f"/profiles/{customer}", headers=profile_svc.token("customer", customer_id=customer)
    )
    assert own.status_code == 200
    assert own.json()["mobile"] == "+8613800138000"
    assert own.json()["pii_masked"] is False

    staff = await profile_svc.http.get(
        f"/profiles/{customer}", headers=profile_svc.token("staff", employee_id="E001")
    )
    assert staff.status_code == 200
    assert staff.json()["mobile"] == "+86138****8000"
    assert staff.json()["wechat_openid"] == "oWx1****abc"
    assert staff.json()["pii_masked"] is True

    for role, claims in (("staff", {"employee_id": "E001"}), ("ops", {})):
        cleared = await profile_svc.http.get(
            f"/profiles/{customer}",
            headers=profile_svc.token(role, permissions=("pii",), **claims),
        )
        assert cleared.json()["mobile"] == "+8613800138000"
    ops = await profile_svc.http.get(f"/profiles/{customer}", headers=profile_svc.token("ops"))
    assert ops.json()["mobile"] == "+86138****8000"


async def test_older_update_arriving_late_does_not_overwrite_newer_fields(
    profile_svc, profile_changes, kafka_producer
):
    customer = new_customer()
    await publish(
        kafka_producer,
        CUSTOMER_UPDATED,
        crm(customer, "2026-11-02T10:00:00", mobile="+8613900000001", name="Li"),
    )
    await profile_changes.wait_for(for_customer(customer))
    # Older event: its mobile is stale, its language is news.
    await publish(
        kafka_producer,
        CUSTOMER_UPDATED,
        crm(customer, "2026-11-01T10:00:00", mobile="+8613900000002", language="en"),
    )
    records = await profile_changes.wait_for(for_customer(customer), count=2)
    latest = data_of(records[-1])
    assert latest["mobile"] == "+8613900000001"
    assert latest["language"] == "en"
    assert latest["name"] == "Li"


async def test_update_that_changes_nothing_emits_nothing_and_duplicates_are_ignored(
    profile_svc, profile_changes, kafka_producer
):
    customer = new_customer()
    first = crm(customer, "2026-11-01T10:00:00", name="Zhao", language="en")
    await publish(kafka_producer, CUSTOMER_UPDATED, first)
    await profile_changes.wait_for(for_customer(customer))
    await publish(kafka_producer, CUSTOMER_UPDATED, first)  # redelivery: same event_id
    same_values = crm(customer, "2026-11-03T10:00:00", name="Zhao", language="en")
    await publish(kafka_producer, CUSTOMER_UPDATED, same_values)
    marker = crm(customer, "2026-11-04T10:00:00", branch_id="B007")
    await publish(kafka_producer, CUSTOMER_UPDATED, marker)
    records = await profile_changes.wait_for(
        lambda r: for_customer(customer)(r) and data_of(r)["branch_id"] == "B007"
    )
    everything = profile_changes.matching(for_customer(customer))
    assert [value_of(r)["causation_id"] for r in everything] == [
        first["event_id"],
        marker["event_id"],
    ]
    assert data_of(records[0])["name"] == "Zhao"


async def test_tier_change_sets_tier_and_maintenance_team(
    profile_svc, profile_changes, kafka_producer
):
    customer = new_customer()
    await publish(kafka_producer, CUSTOMER_UPDATED, crm(customer, "2026-11-01T10:00:00"))
    tier = make_event(
        TIER_CHANGED,
        {
            "customer_id": customer,
            "previous_tier": None,
            "tier": "quality",
            "direction": "initial",
            "total_balance": "620000.00",
            "basis": "balance",
            "maintenance_team": "wealth_team",
            "evaluated_at": at("2026-11-01T11:00:00"),
        },
    )
    await publish(kafka_producer, TIER_CHANGED, tier)
    # The two topics are consumed independently: whichever comes first creates the profile.
    [record] = await profile_changes.wait_for(
        lambda r: for_customer(customer)(r) and data_of(r)["tier"] is not None
    )
    assert data_of(record)["tier"] == "quality"
    assert data_of(record)["maintenance_team"] == "wealth_team"
    assert value_of(record)["causation_id"] == tier["event_id"]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"mobile": "12345"}, "data.mobile"),
        ({"mobile": "+86123"}, "data.mobile"),
        ({"preferred_channel": "wechat"}, "data.preferred_channel"),
    ],
)
async def test_invalid_crm_update_is_dead_lettered_naming_the_field(
    profile_svc, profile_changes, dead_letters, kafka_producer, fields, named
):
    customer = new_customer()
    bad = crm(customer, "2026-11-01T10:00:00", **fields)
    await publish(kafka_producer, CUSTOMER_UPDATED, bad)
    # Other tests leave non-JSON garbage on the dead-letter topic: match the key first.
    [record] = await dead_letters.wait_for(
        lambda r: r.key == customer.encode() and value_of(r)["event_id"] == bad["event_id"]
    )
    assert (header(record, "dlq.error") or "").startswith(named)
    assert not profile_changes.matching(for_customer(customer))
