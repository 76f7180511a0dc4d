"""PATCH /profiles/{id}: who may change what, validation naming the field, effective changes."""

from __future__ import annotations

import pytest

from shared.contracts.topics import CUSTOMER_UPDATED
from shared.testing.kafka import make_event, publish
from tests.integration.profile.conftest import at, data_of, for_customer, new_customer

pytestmark = pytest.mark.integration


async def known_customer(svc, watcher, producer, **fields) -> str:
    customer = new_customer()
    event = make_event(
        CUSTOMER_UPDATED,
        {"customer_id": customer, "mobile": "+8613800138000", **fields},
        occurred_at=at("2026-11-01T10:00:00"),
    )
    await publish(producer, CUSTOMER_UPDATED, event)
    await watcher.wait_for(for_customer(customer))
    return customer


async def test_customer_changes_own_preferences_once(profile_svc, profile_changes, kafka_producer):
    customer = await known_customer(profile_svc, profile_changes, kafka_producer)
    me = profile_svc.token("customer", customer_id=customer)
    body = {
        "preferred_channel": "sms",
        "language": "en",
        "quiet_hours": {"start": "22:30", "end": "07:00"},
        "consents": {"marketing": True},
    }
    response = await profile_svc.http.patch(f"/profiles/{customer}", json=body, headers=me)
    assert response.status_code == 200, response.text
    assert response.json()["quiet_hours"] == {"start": "22:30", "end": "07:00"}
    records = await profile_changes.wait_for(for_customer(customer), count=2)
    assert data_of(records[1])["language"] == "en"
    assert data_of(records[1])["consents"] == {"service": True, "marketing": True}
    assert data_of(records[1])["quiet_hours"] == {"start": "22:30", "end": "07:00"}

    again = await profile_svc.http.patch(f"/profiles/{customer}", json=body, headers=me)
    assert again.status_code == 200
    marker = await profile_svc.http.patch(
        f"/profiles/{customer}",
        json={"quiet_hours": {"start": "23:00", "end": "06:00"}},
        headers=me,
    )
    assert marker.status_code == 200
    await profile_changes.wait_for(
        lambda r: for_customer(customer)(r) and data_of(r)["quiet_hours"]["start"] == "23:00"
    )
    # The repeated PATCH changed nothing, so only CRM, first PATCH and marker emitted.
    assert len(profile_changes.matching(for_customer(customer))) == 3


async def test_customer_may_not_touch_another_customers_profile(
    profile_svc, profile_changes, kafka_producer
):
    customer = await known_customer(profile_svc, profile_changes, kafka_producer)
    other = profile_svc.token("customer", customer_id=new_customer())
    for response in (
        await profile_svc.http.get(f"/profiles/{customer}", headers=other),
        await profile_svc.http.patch(
            f"/profiles/{customer}", json={"language": "en"}, headers=other
        ),
    ):
        assert response.status_code == 403
        assert response.json()["error"] == "forbidden"


async def test_customer_may_not_change_contact_data(profile_svc, profile_changes, kafka_producer):
    customer = await known_customer(profile_svc, profile_changes, kafka_producer)
    me = profile_svc.token("customer", customer_id=customer)
    response = await profile_svc.http.patch(
        f"/profiles/{customer}", json={"mobile": "13900000000", "language": "en"}, headers=me
    )
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden_field"
    assert response.json()["fields"] == ["mobile"]
    unchanged = await profile_svc.http.get(f"/profiles/{customer}", headers=me)
    assert unchanged.json()["mobile"] == "+8613800138000"
    assert unchanged.json()["language"] == "zh-CN"


async def test_staff_changes_contact_data_and_may_not_change_marketing_consent(
    profile_svc, profile_changes, kafka_producer
):
    customer = await known_customer(profile_svc, profile_changes, kafka_producer)
    staff = profile_svc.token("staff", employee_id="E001")
    response = await profile_svc.http.patch(
        f"/profiles/{customer}",
        json={"mobile": "139 0000 0000", "relationship_manager_id": "E777"},
        headers=staff,
    )
    assert response.status_code == 200, response.text
    assert response.json()["mobile"] == "+86139****0000"  # staff without `pii` see it masked
    records = await profile_changes.wait_for(for_customer(customer), count=2)
    assert data_of(records[1])["mobile"] == "+8613900000000"
    assert data_of(records[1])["relationship_manager_id"] == "E777"

    denied = await profile_svc.http.patch(
        f"/profiles/{customer}", json={"consents": {"marketing": True}}, headers=staff
    )
    assert denied.status_code == 403
    assert denied.json()["fields"] == ["consents.marketing"]


@pytest.mark.parametrize(
    ("role", "claims", "body", "field"),
    [
        ("staff", {"employee_id": "E001"}, {"mobile": "12345"}, "mobile"),
        ("staff", {"employee_id": "E001"}, {"name": "名" * 201}, "body.name"),
        ("staff", {"employee_id": "E001"}, {"wechat_openid": "o" * 129}, "body.wechat_openid"),
        ("customer", {}, {"quiet_hours": {"start": "25:00", "end": "08:00"}}, "quiet_hours.start"),
        ("customer", {}, {"quiet_hours": {"start": "21:00", "end": "21:00"}}, "quiet_hours"),
        ("customer", {}, {"language": "fr"}, "body.language"),
        ("customer", {}, {"preferred_channel": "email"}, "body.preferred_channel"),
        ("customer", {}, {"preferred_channel": "wechat"}, "preferred_channel"),
        ("customer", {}, {"favourite_colour": "red"}, "body.favourite_colour"),
    ],
)
async def test_invalid_field_is_422_naming_it(
    profile_svc, profile_changes, kafka_producer, role, claims, body, field
):
    customer = await known_customer(profile_svc, profile_changes, kafka_producer)
    claims = claims or {"customer_id": customer}
    response = await profile_svc.http.patch(
        f"/profiles/{customer}", json=body, headers=profile_svc.token(role, **claims)
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(field)


async def test_a_body_over_the_limit_is_413_and_changes_nothing(
    profile_svc, profile_changes, kafka_producer
):
    customer = await known_customer(profile_svc, profile_changes, kafka_producer)
    staff = profile_svc.token("staff", employee_id="E001")
    response = await profile_svc.http.patch(
        f"/profiles/{customer}", json={"name": "名" * 30_000}, headers=staff
    )
    assert response.status_code == 413, response.text
    assert response.json() == {
        "error": "payload_too_large",
        "detail": "the request body is over 65536 bytes",
    }
    profile = await profile_svc.http.get(f"/profiles/{customer}", headers=staff)
    assert profile.json()["name"] != "名" * 30_000


async def test_wechat_with_an_openid_is_accepted(profile_svc, profile_changes, kafka_producer):
    customer = await known_customer(
        profile_svc, profile_changes, kafka_producer, wechat_openid="oWx0000000001"
    )
    response = await profile_svc.http.patch(
        f"/profiles/{customer}",
        json={"preferred_channel": "wechat"},
        headers=profile_svc.token("customer", customer_id=customer),
    )
    assert response.status_code == 200
    assert response.json()["preferred_channel"] == "wechat"


async def test_unknown_customer_is_404(profile_svc):
    customer = new_customer()
    admin = profile_svc.token("admin")
    assert (await profile_svc.http.get(f"/profiles/{customer}", headers=admin)).status_code == 404
    response = await profile_svc.http.patch(
        f"/profiles/{customer}", json={"language": "en"}, headers=admin
    )
    assert response.status_code == 404
    signals = await profile_svc.http.get(f"/profiles/{customer}/signals", headers=admin)
    assert signals.status_code == 404
