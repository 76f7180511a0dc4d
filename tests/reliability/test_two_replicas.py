"""Two complaints replicas on one schema, both advancing their clocks: every SLA timer fires
exactly once (FOR UPDATE SKIP LOCKED), counted on the topics per complaint, clock and level."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta

import pytest

from services.complaints.app import SPEC
from shared.contracts.topics import SLA_BREACHED, SLA_WARNING
from shared.testing.kafka import TopicWatcher, value_of
from shared.testing.services import running_service, service_settings
from tests.integration.complaints.conftest import STAFF
from tests.integration.complaints.timing import advance_to

pytestmark = pytest.mark.integration
COMPLAINTS = 15
# A major complaint (card fraud): response clock warns at 48 min, breaches at 1 h (level 1)
# and 1 h 30 (level 2); resolution warns at 4 h 48, breaches at 6 h (1) and 9 h (2).
EXPECTED = {
    ("warning", "response", None), ("warning", "resolution", None),
    ("breach", "response", 1), ("breach", "response", 2),
    ("breach", "resolution", 1), ("breach", "resolution", 2),
}  # fmt: skip


async def test_two_replicas_fire_every_sla_timer_exactly_once(infra):
    schema = infra.new_schema("complaints_pair")
    warnings = await TopicWatcher(infra.bootstrap_servers, SLA_WARNING).start()
    breaches = await TopicWatcher(infra.bootstrap_servers, SLA_BREACHED).start()
    settings = service_settings(SPEC, infra, schema=schema)
    try:
        async with (
            running_service(SPEC, settings) as one,
            running_service(SPEC, settings, migrate=False) as two,
        ):
            ids, received = set(), None
            for n in range(COMPLAINTS):
                replica = (one, two)[n % 2]
                response = await replica.http.post(
                    "/complaints",
                    json={"customer_id": f"C-pair-{uuid.uuid4().hex[:8]}", "channel": "branch",
                          "category": "card_fraud", "description": "card used abroad",
                          "amount_involved": "3200.00"},
                    headers=STAFF,
                )  # fmt: skip
                assert response.status_code == 201, response.text
                ids.add(response.json()["complaint_id"])
                received = received or datetime.fromisoformat(response.json()["received_at"])
            assert received is not None
            # Both replicas move through the day in 20-minute steps, each racing for the timers.
            for step in range(1, 9 * 3 + 5):
                moment = received + timedelta(minutes=20 * step)
                await advance_to(one, moment)
                await advance_to(two, moment)
            fired: Counter[tuple[str, str, str, int | None]] = Counter()
            for kind, watcher in (("warning", warnings), ("breach", breaches)):
                await watcher.wait_for(
                    lambda r: value_of(r)["data"]["complaint_id"] in ids,
                    count=COMPLAINTS * (2 if kind == "warning" else 4),
                    timeout=30,
                )
                for record in watcher.matching(
                    lambda r: value_of(r)["data"]["complaint_id"] in ids
                ):
                    data = value_of(record)["data"]
                    fired[
                        data["complaint_id"], kind, data["clock"], data.get("escalation_level")
                    ] += 1
    finally:
        await warnings.stop()
        await breaches.stop()
    expected = Counter({(cid, *e): 1 for cid in ids for e in EXPECTED})
    print(
        f"\nreplicas: {COMPLAINTS} complaints, {sum(expected.values())} SLA events expected, "
        f"{sum(fired.values())} observed, duplicates {sum(n - 1 for n in fired.values() if n > 1)}"
    )
    assert fired == expected
