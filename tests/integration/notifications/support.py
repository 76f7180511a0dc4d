"""Helpers of the notification tests: events to publish and reads through the API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from services.notifications import store
from shared.contracts.topics import PROFILE_CHANGED, TIER_CHANGED
from shared.testing.kafka import make_event, publish
from shared.testing.services import RunningService
from shared.testing.waiting import eventually


def new_customer() -> str:
    return f"C-{uuid.uuid4().hex[:10]}"


def new_mobile() -> str:
    return f"+86138{uuid.uuid4().int % 10**8:08d}"


def new_openid() -> str:
    return "o" + uuid.uuid4().hex[:27]


def profile(customer_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "name": "Li Lei",
        "mobile": new_mobile(),
        "wechat_openid": None,
        "language": "en",
        "preferred_channel": "sms",
        "consents": {"service": True, "marketing": False},
        "quiet_hours": {"start": "21:00", "end": "08:00"},
        "relationship_manager_id": None,
        "branch_id": "B001",
    } | fields


def tier_changed(
    customer_id: str, tier: str = "quality", previous: str | None = "potential", **fields: Any
) -> dict[str, Any]:
    teams = {
        "ordinary": "branch_service",
        "potential": "customer_manager",
        "quality": "wealth_team",
        "high_end": "private_banking",
    }
    return {
        "customer_id": customer_id,
        "previous_tier": previous,
        "tier": tier,
        "direction": "upgrade" if previous else "initial",
        "total_balance": "620000.00",
        "basis": "balance",
        "maintenance_team": teams[tier],
        "evaluated_at": datetime.now(UTC).isoformat(),
    } | fields


async def known_customer(
    svc: RunningService, producer: AIOKafkaProducer, data: dict[str, Any]
) -> dict[str, Any]:
    """Publish a ProfileChanged and wait until the replica holds it."""
    await publish(producer, PROFILE_CHANGED, make_event(PROFILE_CHANGED, data))

    async def read() -> Any:
        async with svc.runtime.sessions() as session:
            return (await store.customers_by_id(session, [data["customer_id"]])).get(
                data["customer_id"]
            )

    await eventually(read, lambda row: row is not None)
    return data


async def upgrade(producer: AIOKafkaProducer, customer_id: str, **fields: Any) -> dict[str, Any]:
    event = make_event(TIER_CHANGED, tier_changed(customer_id, **fields))
    await publish(producer, TIER_CHANGED, event)
    return event


async def messages(
    svc: RunningService, *, customer_id: str | None = None, employee_id: str | None = None
) -> list[dict[str, Any]]:
    params = {"customer_id": customer_id} if customer_id else {"employee_id": employee_id}
    response = await svc.http.get("/notifications", params=params, headers=svc.token("ops"))
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def settled(
    svc: RunningService,
    template: str,
    *,
    customer_id: str | None = None,
    employee_id: str | None = None,
    count: int = 1,
    statuses: tuple[str, ...] = ("sent", "failed", "suppressed"),
    timeout: float = 45.0,
    mentioning: str | None = None,
) -> list[dict[str, Any]]:
    """Messages of `template` to the recipient, once `count` of them reached `statuses`.

    `mentioning` keeps only messages whose body contains it: shared staff recipients also
    receive messages caused by other tests' events in the same session.
    """

    async def read() -> list[dict[str, Any]]:
        items = await messages(svc, customer_id=customer_id, employee_id=employee_id)
        return [
            m
            for m in items
            if m["template"] == template and (mentioning is None or mentioning in (m["body"] or ""))
        ]

    return await eventually(
        read, lambda ms: sum(m["status"] in statuses for m in ms) >= count, timeout=timeout
    )


async def detail(svc: RunningService, notification_id: str) -> dict[str, Any]:
    response = await svc.http.get(f"/notifications/{notification_id}", headers=svc.token("ops"))
    assert response.status_code == 200, response.text
    return response.json()
