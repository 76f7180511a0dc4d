"""Filing from channels and the API: grading, routing, idempotency, read model, snapshots."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from services.complaints.app import SPEC
from services.complaints.store import customer_tiers
from shared.contracts.topics import (
    COMPLAINT_FILED,
    COMPLAINT_UPDATED,
    TIER_CHANGED,
    dead_letter_topic,
)
from shared.testing.kafka import TopicWatcher, header, make_event, publish, value_of
from shared.testing.services import RunningService, running_service, service_settings
from shared.testing.waiting import eventually
from tests.integration.complaints.conftest import STAFF, customer, customer_id, filed_event

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def svc(infra) -> AsyncIterator[RunningService]:
    async with running_service(SPEC, service_settings(SPEC, infra)) as service:
        yield service


@pytest.fixture(scope="module")
async def updates(infra) -> AsyncIterator[TopicWatcher]:
    watcher = await TopicWatcher(infra.bootstrap_servers, COMPLAINT_UPDATED).start()
    yield watcher
    await watcher.stop()


def for_customer(cid: str):
    return lambda r: r.key == cid.encode()


async def test_card_fraud_event_is_major_at_head_office_risk_with_snapshot(
    svc, updates, kafka_producer
):
    cid = customer_id()
    received = svc.runtime.clock.now().replace(microsecond=0)
    event = filed_event(cid, received, category="card_fraud", received_by="E321")
    await publish(kafka_producer, COMPLAINT_FILED, event)

    [record] = await updates.wait_for(for_customer(cid))
    snap = value_of(record)
    assert snap["causation_id"] == event["event_id"]
    data = snap["data"]
    assert (data["status"], data["severity"], data["department"], data["owner_id"]) == (
        "received",
        "major",
        "head_office_risk",
        "E321",
    )
    assert data["change"] == "filed"
    assert datetime.fromisoformat(data["resolution_due_at"]) == received + timedelta(hours=6)
    assert datetime.fromisoformat(data["response_due_at"]) == received + timedelta(hours=1)
    assert datetime.fromisoformat(data["regulatory_due_at"]) == received + timedelta(days=15)

    response = await svc.http.get(f"/complaints/{data['complaint_id']}", headers=STAFF)
    assert response.status_code == 200
    body = response.json()
    assert body["complaint_ref"] == event["data"]["complaint_ref"]
    assert body["grading_reasons"] == ["fund_security"]
    assert [(t["to_department"], t["by"]) for t in body["trail"]] == [("head_office_risk", "E321")]
    assert body["callbacks"] == []


async def test_duplicate_complaint_filed_creates_one_complaint(svc, updates, kafka_producer):
    cid = customer_id()
    now = svc.runtime.clock.now()
    first = filed_event(cid, now)
    again = make_event(COMPLAINT_FILED, first["data"])  # same complaint_ref, new event id
    later = filed_event(cid, now, category="other")
    for event in (first, again, first, later):
        await publish(kafka_producer, COMPLAINT_FILED, event)

    # Same key, same partition: once `later` is filed, the duplicates were processed.
    await updates.wait_for(lambda r: for_customer(cid)(r) and b'"category":"other"' in r.value)
    response = await svc.http.get(f"/complaints?customer_id={cid}", headers=STAFF)
    refs = sorted(item["complaint_ref"] for item in response.json()["items"])
    assert refs == sorted([first["data"]["complaint_ref"], later["data"]["complaint_ref"]])
    assert len(updates.matching(for_customer(cid))) == 2


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"amount_involved": "-5.00"}, "data.amount_involved"),
        ({"description": "   "}, "data.description"),
        ({"category": "weather"}, "data.category"),
        ({"channel": "carrier_pigeon"}, "data.channel"),
    ],
)
async def test_bad_complaint_filed_is_dead_lettered(svc, infra, kafka_producer, override, field):
    cid = customer_id()
    dead = await TopicWatcher(infra.bootstrap_servers, dead_letter_topic("complaints")).start()
    try:
        event = filed_event(cid, svc.runtime.clock.now(), **override)
        await publish(kafka_producer, COMPLAINT_FILED, event)
        [record] = await dead.wait_for(for_customer(cid))
        assert json.loads(record.value) == event
        assert field in (header(record, "dlq.error") or "")
    finally:
        await dead.stop()
    response = await svc.http.get(f"/complaints?customer_id={cid}", headers=STAFF)
    assert response.json()["items"] == []


async def test_quality_tier_from_read_model_makes_it_urgent(svc, updates, kafka_producer):
    cid = customer_id()
    now = svc.runtime.clock.now()
    tier_event = make_event(
        TIER_CHANGED,
        {
            "customer_id": cid,
            "previous_tier": "potential",
            "tier": "quality",
            "direction": "upgrade",
            "total_balance": "600000.00",
            "basis": "balance",
            "maintenance_team": "wealth_team",
            "evaluated_at": now.isoformat(),
        },
    )
    await publish(kafka_producer, TIER_CHANGED, tier_event)

    async def tier() -> str | None:
        async with svc.runtime.sessions() as session:
            return await session.scalar(
                customer_tiers.select()
                .with_only_columns(customer_tiers.c.tier)
                .where(customer_tiers.c.customer_id == cid)
            )

    await eventually(tier, lambda t: t == "quality")
    await publish(kafka_producer, COMPLAINT_FILED, filed_event(cid, now, category="fees"))
    [record] = await updates.wait_for(for_customer(cid))
    data = value_of(record)["data"]
    assert (data["severity"], data["department"]) == ("urgent", "retail_banking")


async def test_repeat_complaint_within_90_days_is_urgent(svc, updates):
    cid = customer_id()
    headers = customer(cid)
    body = {"category": "service_attitude", "description": "rude teller"}
    first = await svc.http.post("/complaints", json=body, headers=headers)
    second = await svc.http.post("/complaints", json=body, headers=headers)
    other = await svc.http.post(
        "/complaints", json=body | {"category": "processing_delay"}, headers=headers
    )
    assert (first.json()["severity"], first.json()["is_repeat"]) == ("normal", False)
    assert (second.json()["severity"], second.json()["is_repeat"]) == ("urgent", True)
    assert other.json()["severity"] == "normal"
    await updates.wait_for(for_customer(cid), count=3)
    stats = await svc.http.get("/complaints/stats", headers=RunningService.token("ops"))
    assert stats.status_code == 200
    assert stats.json()["overall"]["complaints"] >= 3
