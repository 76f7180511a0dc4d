"""The platform end to end: a BalanceChanged in, a TierChanged out, through the real stack."""

from __future__ import annotations

import uuid

import pytest

from services.tiering.app import SPEC
from shared.contracts.topics import BALANCE_CHANGED, TIER_CHANGED
from shared.testing.kafka import TopicWatcher, make_event, publish, value_of
from shared.testing.services import running_service, service_settings

pytestmark = pytest.mark.integration


async def test_balance_change_produces_tier_change(infra, kafka_producer):
    customer = f"C-{uuid.uuid4().hex[:10]}"
    watcher = await TopicWatcher(infra.bootstrap_servers, TIER_CHANGED).start()
    try:
        async with running_service(SPEC, service_settings(SPEC, infra)) as svc:
            event = make_event(
                BALANCE_CHANGED,
                {
                    "customer_id": customer,
                    "account_id": f"{customer}-01",
                    "currency": "CNY",
                    "balance": "50000.00",
                    "delta": "50000.00",
                    "txn_id": "T1",
                    "account_seq": 1,
                },
            )
            await publish(kafka_producer, BALANCE_CHANGED, event)
            [record] = await watcher.wait_for(lambda r: r.key == customer.encode())
            tier_changed = value_of(record)
            assert tier_changed["event_type"] == "TierChanged"
            assert tier_changed["causation_id"] == event["event_id"]
            assert tier_changed["data"] | {"evaluated_at": None} == {
                "customer_id": customer,
                "previous_tier": None,
                "tier": "potential",
                "direction": "initial",
                "total_balance": "50000.00",
                "basis": "balance",
                "maintenance_team": "customer_manager",
                "evaluated_at": None,
            }
            response = await svc.http.get(
                f"/customers/{customer}/tier", headers=svc.token("staff", employee_id="E001")
            )
            assert response.status_code == 200
            assert response.json()["tier"] == "potential"

            admin = svc.token("admin")
            response = await svc.http.post(
                "/admin/clock", json={"advance_seconds": -5}, headers=admin
            )
            assert response.status_code == 422
            assert response.json()["error"] == "validation_error"
            assert "body.advance_seconds" in response.json()["detail"]
    finally:
        await watcher.stop()
