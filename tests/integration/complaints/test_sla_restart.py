"""SLA clocks are durable: a major complaint warns at 4h48m and breaches at 6h, once each,
even when the service restarts in between."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.complaints.app import SPEC
from shared.contracts.topics import OPS_ALERTS, SLA_BREACHED, SLA_WARNING
from shared.testing.kafka import TopicWatcher, value_of
from shared.testing.services import KEEP_PUBLISHED, running_service, service_settings
from tests.integration.complaints.conftest import STAFF, file_complaint
from tests.integration.complaints.timing import advance_to, emitted

pytestmark = pytest.mark.integration
MINUTE = timedelta(minutes=1)


def resolution_alerts(watcher: TopicWatcher, complaint_id: str) -> list[dict]:
    found = [value_of(r)["data"] for r in watcher.records]
    return [d for d in found if d["complaint_id"] == complaint_id and d["clock"] == "resolution"]


async def test_major_card_fraud_warns_and_breaches_once_across_a_restart(infra):
    settings = service_settings(
        SPEC, infra, schema=infra.new_schema("complaints"), **KEEP_PUBLISHED
    )
    warnings = await TopicWatcher(infra.bootstrap_servers, SLA_WARNING).start()
    breaches = await TopicWatcher(infra.bootstrap_servers, SLA_BREACHED).start()
    alerts = await TopicWatcher(infra.bootstrap_servers, OPS_ALERTS).start()
    try:
        async with running_service(SPEC, settings) as svc:
            complaint = await file_complaint(
                svc,
                channel="branch",
                category="card_fraud",
                description="card used in another city while I was home",
                amount_involved="3200.00",
            )
            cid = complaint["complaint_id"]
            received = datetime.fromisoformat(complaint["received_at"])
            assert complaint["severity"] == "major"
            assert (
                datetime.fromisoformat(complaint["resolution_due_at"]) == received + 6 * 60 * MINUTE
            )

            await advance_to(svc, received + timedelta(hours=4, minutes=47))
            assert [
                d for d in await emitted(svc, SLA_WARNING, cid) if d["clock"] == "resolution"
            ] == []

            await advance_to(svc, received + timedelta(hours=4, minutes=48))
            [warning] = await warnings.wait_for(
                lambda r: (
                    value_of(r)["data"]["complaint_id"] == cid
                    and value_of(r)["data"]["clock"] == "resolution"
                )
            )
            warned = value_of(warning)["data"]
            assert datetime.fromisoformat(warned["due_at"]) == received + timedelta(hours=6)
            assert (warned["department"], warned["owner_id"]) == ("head_office_risk", "E100")

        # Restart: a new process on the same schema, with its own (un-advanced) dev clock.
        async with running_service(SPEC, settings) as svc:
            await advance_to(svc, received + timedelta(hours=5, minutes=59))
            early = await emitted(svc, SLA_BREACHED, cid)
            assert [d["clock"] for d in early] == ["response", "response"]  # 1h and 1h30m
            assert len(await emitted(svc, SLA_WARNING, cid)) == 2  # response 48m, resolution

            await advance_to(svc, received + timedelta(hours=6))
            [breach] = await breaches.wait_for(
                lambda r: (
                    value_of(r)["data"]["complaint_id"] == cid
                    and value_of(r)["data"]["clock"] == "resolution"
                )
            )
            breached = value_of(breach)["data"]
            assert breached["escalation_level"] == 1
            assert 0 <= breached["overdue_by_seconds"] < 60

            await advance_to(svc, received + timedelta(hours=9))
            await breaches.wait_for(
                lambda r: (
                    value_of(r)["data"]["complaint_id"] == cid
                    and value_of(r)["data"]["clock"] == "resolution"
                ),
                count=2,
            )
            await alerts.wait_for(lambda r: cid.encode() in (r.value or b""), count=4)

            # Exactly once each, in the outbox (both processes) and on the topics.
            written = [
                d for d in await emitted(svc, SLA_WARNING, cid) if d["clock"] == "resolution"
            ]
            assert len(written) == 1
            levels = [
                d["escalation_level"]
                for d in await emitted(svc, SLA_BREACHED, cid)
                if d["clock"] == "resolution"
            ]
            assert levels == [1, 2]
            assert len(resolution_alerts(warnings, cid)) == 1
            assert [d["escalation_level"] for d in resolution_alerts(breaches, cid)] == [1, 2]
            got = await svc.http.get(f"/complaints/{cid}", headers=STAFF)
            assert (got.json()["escalation_level"], got.json()["overdue"]) == (2, True)
    finally:
        for watcher in (warnings, breaches, alerts):
            await watcher.stop()
