"""A full replay of the inbound stream (every event again, same event ids, after the first
pass was processed) produces zero new effects: no TierChanged, no history row, same tiers."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from services.tiering.app import SPEC
from shared.contracts.topics import BALANCE_CHANGED, TIER_CHANGED
from shared.tables import inbox, outbox
from shared.testing.drain import drained
from shared.testing.kafka import TopicWatcher, publish, value_of
from shared.testing.services import KEEP_PUBLISHED, running_service, service_settings
from tests.integration.tiering.test_tier_stream import build_stream, expected_changes
from tests.reliability.support import emitted_ids

pytestmark = pytest.mark.integration


async def _effects(svc, events: list[dict]) -> tuple[int, int]:
    """(outbox rows ever written, inbox ids) for this test's customers and events.

    A new consumer group reads the topic from the start: other tests' events are there too.
    """
    keys = list({e["data"]["customer_id"].encode() for e in events})
    ids = [e["event_id"] for e in events]
    async with svc.runtime.sessions() as session:
        emitted = await session.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.key.in_(keys))
        )
        claimed = await session.scalar(
            select(func.count()).select_from(inbox).where(inbox.c.event_id.in_(ids))
        )
    return int(emitted or 0), int(claimed or 0)


async def _histories(svc, staff, customers: set[bytes]) -> dict[str, object]:
    found = {}
    for customer in sorted(c.decode() for c in customers):
        response = await svc.http.get(f"/customers/{customer}/tier/history", headers=staff)
        found[customer] = response.json()
    return found


async def test_replaying_every_event_changes_nothing(infra, kafka_producer):
    run = uuid.uuid4().hex[:6]
    events = build_stream(run, customers=30)
    wanted = sum(len(v) for v in expected_changes(events).values())
    ours = {e["data"]["customer_id"].encode() for e in events}
    changes = await TopicWatcher(infra.bootstrap_servers, TIER_CHANGED).start()
    try:
        async with running_service(SPEC, service_settings(SPEC, infra, **KEEP_PUBLISHED)) as svc:
            for event in events:
                await publish(kafka_producer, BALANCE_CHANGED, event)
            await drained(svc.runtime)
            before = await _effects(svc, events)
            staff = svc.token("staff", employee_id="E1")
            histories = await _histories(svc, staff, ours)

            for event in events:  # the replay: the same envelopes, the same event ids
                await publish(kafka_producer, BALANCE_CHANGED, event)
            await drained(svc.runtime)
            after = await _effects(svc, events)
            replayed = await _histories(svc, staff, ours)
            # Anything emitted by the replay is on the topic by now (outbox drained).
            mine = await emitted_ids(infra.database_url, svc.runtime.schema, TIER_CHANGED)
            # A new group reads the topic from its start: this instance also re-evaluated
            # other tests' customers. Only this test's customers count.

            def ours_from_here(r: Any) -> bool:
                return r.key in ours and value_of(r)["event_id"] in mine

            records = await changes.wait_for(ours_from_here, count=wanted)
    finally:
        await changes.stop()
    print(
        f"\nreplay: {len(events)} events twice; effects first pass {before}, after replay "
        f"{after}; TierChanged on topic {len(records)} (expected {wanted}), "
        f"{len({(r.partition, r.offset) for r in records})} distinct positions"
    )
    assert before[1] == len(events)  # every event claimed once
    assert after == before  # no outbox row, no inbox id added by the replay
    assert len(records) == wanted
    assert replayed == histories
