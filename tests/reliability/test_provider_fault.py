"""The SMS provider answers 5xx, then times out, then recovers, under a stream of tier
upgrades: retries with backoff, then delivery; no message delivered twice; a
`provider_down` alert for every message whose retries ran out while the provider failed.

The service's dev clock drives the backoffs (base 600 s, so no retry falls due in real
time): each wave of upgrades meets the provider in a known state at each attempt.

  wave    attempt 1   attempt 2   attempt 3   outcome
  early   5xx         5xx         timeout     failed + provider_down alert (3 attempts used)
  mid     5xx         timeout     ok          sent
  late    timeout     ok          -           sent
  after   ok          -           -           sent

"Delivered twice" means two requests the gateway answered `ok` for one notification id
(`client_ref`). A timed-out request (the gateway answers only after the client gave up) is
a failed attempt; it carries the notification id as `Idempotency-Key` so a real provider
can drop a repeat.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from services.notifications import store
from services.notifications.app import SPEC
from shared.clock import DevClock
from shared.contracts.topics import OPS_ALERTS, PROFILE_CHANGED
from shared.testing.kafka import TopicWatcher, make_event, publish, value_of
from shared.testing.services import (
    KEEP_PUBLISHED,
    RunningService,
    running_service,
    service_settings,
)
from shared.testing.waiting import eventually
from tests.integration.notifications.conftest import TEAMS, team_mobile
from tests.integration.notifications.fake_gateway import FakeGateway
from tests.integration.notifications.support import new_customer, profile, upgrade
from tests.reliability.support import emitted_ids

pytestmark = pytest.mark.integration

PER_WAVE = 8  # customers per wave; each upgrade → a customer and a maintenance-team message
TICK = 1300.0  # dev seconds: beyond any backoff (≤ min(3600, 600·2^(n-1)) ≤ 1200 s here)
EXPECTED_REQUESTS = {"early": 3, "mid": 3, "late": 2, "after": 1}


class OutageGateway(FakeGateway):
    """The fake gateway with a global mode: `5xx`, `timeout` or `ok` for every request."""

    mode: str = "ok"

    def _next(self, channel: str, address: str) -> str:
        return self.mode if self.mode != "ok" else super()._next(channel, address)


@pytest.fixture
async def gateway() -> AsyncIterator[OutageGateway]:
    fake = OutageGateway(hang_seconds=1.5)
    await fake.start()
    yield fake
    await fake.stop()


async def _ours(svc: RunningService, customers: set[str]) -> dict[str, Any]:
    """Our customers' notifications (customer and maintenance-team messages) by id."""
    n = store.notifications.c
    async with svc.runtime.sessions() as session:
        rows = await session.execute(
            select(n.notification_id, n.customer_id, n.status, n.attempts, n.reason).where(
                n.customer_id.in_(customers)
            )
        )
        return {r.notification_id: r for r in rows}


async def _wave_state(
    svc: RunningService, customers: set[str], *, attempts: int, status: str
) -> dict[str, Any]:
    """Wait until each of the wave's 2 messages per customer made `attempts` and has `status`."""

    async def read() -> dict[str, Any]:
        return await _ours(svc, customers)

    def reached(rows: dict[str, Any]) -> bool:
        return len(rows) == 2 * len(customers) and all(
            r.attempts == attempts and r.status == status for r in rows.values()
        )

    return await eventually(read, reached, timeout=60)


async def test_provider_5xx_then_timeouts_then_recovery_delivers_each_message_once(
    infra, kafka_producer, gateway
):
    settings = service_settings(
        SPEC,
        infra,
        notifications_sms_provider="http",
        notifications_sms_url=f"{gateway.url}/sms/send",
        notifications_sms_api_key=gateway.api_key,
        notifications_sms_secret=gateway.secret,
        notifications_provider_timeout_seconds=0.5,
        notifications_max_attempts=3,
        notifications_retry_base_seconds=600,
        notifications_retry_cap_seconds=3600,
        notifications_daily_cap=5,
        **KEEP_PUBLISHED,
    )
    alerts = await TopicWatcher(infra.bootstrap_servers, OPS_ALERTS).start()
    try:
        async with running_service(SPEC, settings) as svc:
            clock = svc.runtime.clock
            assert isinstance(clock, DevClock)
            for team in TEAMS:
                response = await svc.http.put(
                    f"/departments/{team}/duty-contact",
                    json={"name": f"{team} desk", "mobile": team_mobile(team)},
                    headers=svc.token("admin"),
                )
                assert response.status_code == 200, response.text
            waves = {w: {new_customer() for _ in range(PER_WAVE)} for w in EXPECTED_REQUESTS}
            everyone = set().union(*waves.values())
            # No quiet hours (start == end): the clock jumps must not defer anything.
            for customer in everyone:
                data = profile(customer, quiet_hours={"start": "00:00", "end": "00:00"})
                await publish(kafka_producer, PROFILE_CHANGED, make_event(PROFILE_CHANGED, data))

            async def known() -> int:
                async with svc.runtime.sessions() as session:
                    return len(await store.customers_by_id(session, everyone))

            await eventually(known, lambda n: n == len(everyone), timeout=60)

            async def send_wave(name: str) -> None:
                for customer in waves[name]:
                    await upgrade(kafka_producer, customer)

            gateway.mode = "5xx"
            await send_wave("early")
            await _wave_state(svc, waves["early"], attempts=1, status="queued")
            clock.advance(TICK)
            await send_wave("mid")
            await _wave_state(svc, waves["early"], attempts=2, status="queued")
            await _wave_state(svc, waves["mid"], attempts=1, status="queued")

            gateway.mode = "timeout"
            clock.advance(TICK)
            await send_wave("late")
            early = await _wave_state(svc, waves["early"], attempts=3, status="failed")
            await _wave_state(svc, waves["mid"], attempts=2, status="queued")
            await _wave_state(svc, waves["late"], attempts=1, status="queued")
            raised = await alerts.wait_for(
                lambda r: value_of(r)["data"]["details"].get("notification_id") in early,
                count=len(early),
            )  # on the topic while the provider is still failing

            gateway.mode = "ok"
            clock.advance(TICK)
            await send_wave("after")
            for name in ("mid", "late", "after"):
                attempts = EXPECTED_REQUESTS[name]
                await _wave_state(svc, waves[name], attempts=attempts, status="sent")
            final = await _ours(svc, everyone)
            alert_ids = await emitted_ids(infra.database_url, svc.runtime.schema, OPS_ALERTS)
    finally:
        await alerts.stop()

    ours = set(final)
    requests = [r for r in gateway.received if r.body.get("client_ref") in ours]
    per_message = Counter(r.body["client_ref"] for r in requests)
    delivered = Counter(r.body["client_ref"] for r in requests if r.behaviour == "ok")
    wave_of = {c: w for w, cs in waves.items() for c in cs}
    expected_requests = {
        nid: EXPECTED_REQUESTS[wave_of[row.customer_id]] for nid, row in final.items()
    }
    should_send = {nid for nid, row in final.items() if wave_of[row.customer_id] != "early"}
    alert_events = [value_of(r)["data"] for r in raised]
    # This instance also alerts on other tests' messages it read from the shared topics.
    my_alerts = [
        value_of(r)["data"]
        for r in alerts.records
        if value_of(r)["event_id"] in alert_ids
        and value_of(r)["data"]["details"].get("notification_id") in ours
    ]
    print(
        f"\nprovider fault: {len(everyone)} upgrades, {len(final)} messages, "
        f"{len(should_send)} deliveries expected, {sum(delivered.values())} observed, "
        f"{sum(n - 1 for n in delivered.values() if n > 1)} duplicates, "
        f"{len(should_send - set(delivered))} lost; {len(requests)} gateway requests "
        f"({Counter(r.behaviour for r in requests)}); {len(early)} gave up, "
        f"{len(my_alerts)} alerts ({len(alert_events)} seen before recovery)"
    )
    assert len(final) == 2 * len(everyone)
    assert dict(per_message) == expected_requests  # every retry, no extra attempt
    assert dict(delivered) == dict.fromkeys(should_send, 1)  # each once, none twice
    assert {nid for nid, row in final.items() if row.status == "sent"} == should_send
    assert {row.status for nid, row in final.items() if nid not in should_send} == {"failed"}
    # One provider_down alert per message given up, none for a message that got through.
    assert sorted(a["details"]["notification_id"] for a in my_alerts) == sorted(early)
    assert {(a["kind"], a["severity"]) for a in my_alerts} == {("provider_down", "critical")}
