"""Ops alerts for SLA breaches: a lone breach alerts about its complaint; breaches that
fall due together (one deadline shared by many complaints) alert once per department,
clock and escalation level, naming every complaint, instead of an alert storm."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from services.complaints.app import SPEC
from shared.contracts.topics import OPS_ALERTS, SLA_BREACHED
from shared.tables import outbox
from shared.testing.services import (
    KEEP_PUBLISHED,
    RunningService,
    running_service,
    service_settings,
)
from tests.integration.complaints.conftest import file_complaint
from tests.integration.complaints.timing import advance_to

pytestmark = pytest.mark.integration


async def _written(svc: RunningService, topic: str) -> list[dict[str, Any]]:
    async with svc.runtime.sessions() as session:
        rows = await session.scalars(
            select(outbox.c.value).where(outbox.c.topic == topic).order_by(outbox.c.id)
        )
        return [json.loads(value)["data"] for value in rows]


async def test_breaches_falling_due_together_raise_one_alert_per_department_and_level(infra):
    # One claim fires them all.
    settings = service_settings(SPEC, infra, timer_concurrency=1, **KEEP_PUBLISHED)
    async with running_service(SPEC, settings) as svc:
        filed = [await file_complaint(svc) for _ in range(3)]
        ids = sorted(c["complaint_id"] for c in filed)
        due = max(datetime.fromisoformat(c["response_due_at"]) for c in filed)
        await advance_to(svc, due + timedelta(seconds=1))

        breaches = [d for d in await _written(svc, SLA_BREACHED) if d["clock"] == "response"]
        assert sorted(d["complaint_id"] for d in breaches) == ids  # one event per complaint
        [alert] = [
            a
            for a in await _written(svc, OPS_ALERTS)
            if a["kind"] == "sla_breach" and a["details"]["clock"] == "response"
        ]
        assert alert["severity"] == "warning"
        assert alert["details"]["count"] == 3
        assert sorted(alert["details"]["complaint_ids"]) == ids
        assert alert["details"]["escalation_level"] == 1
        assert alert["details"]["department"] == filed[0]["department"]
        assert "complaint_id" not in alert["details"]
        assert alert["message"].startswith("3 complaints in ")


async def test_a_lone_breach_alerts_about_its_complaint(infra):
    async with running_service(SPEC, service_settings(SPEC, infra, **KEEP_PUBLISHED)) as svc:
        complaint = await file_complaint(svc)
        due = datetime.fromisoformat(complaint["response_due_at"])
        await advance_to(svc, due + timedelta(seconds=1))

        [alert] = [a for a in await _written(svc, OPS_ALERTS) if a["kind"] == "sla_breach"]
        assert alert["details"]["complaint_id"] == complaint["complaint_id"]
        assert alert["details"]["complaint_ids"] == [complaint["complaint_id"]]
        assert alert["details"]["count"] == 1
        assert complaint["complaint_id"] in alert["message"]
