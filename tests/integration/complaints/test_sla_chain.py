"""SLA levels as a chain: a running clock holds one pending timer, moved on to the next
level each time one fires."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from services.complaints.app import SPEC
from services.complaints.domain import TIMER_SLA
from shared.contracts.topics import SLA_BREACHED, SLA_WARNING
from shared.tables import timers
from shared.testing.services import (
    KEEP_PUBLISHED,
    RunningService,
    running_service,
    service_settings,
)
from tests.integration.complaints.conftest import file_complaint
from tests.integration.complaints.timing import advance_to, emitted

pytestmark = pytest.mark.integration
SECOND = timedelta(seconds=1)


async def sla_timers(svc: RunningService, complaint_id: str) -> set[tuple[str, str, bool]]:
    """(key without the complaint id, level, pending) of the complaint's SLA timers."""
    async with svc.runtime.sessions() as session:
        rows = await session.execute(
            select(timers.c.key, timers.c.payload, timers.c.fired_at.is_(None)).where(
                timers.c.kind == TIMER_SLA, timers.c.key.startswith(f"{complaint_id}:")
            )
        )
        return {
            (key.removeprefix(f"{complaint_id}:"), payload["level"], pending)
            for key, payload, pending in rows
        }


async def response_levels(svc: RunningService, complaint_id: str) -> list[tuple[str, int]]:
    warnings = await emitted(svc, SLA_WARNING, complaint_id)
    breaches = await emitted(svc, SLA_BREACHED, complaint_id)
    return [("warning", 0) for d in warnings if d["clock"] == "response"] + [
        ("breach", d["escalation_level"]) for d in breaches if d["clock"] == "response"
    ]


async def test_a_running_clock_holds_one_timer_moved_on_level_by_level(infra):
    async with running_service(SPEC, service_settings(SPEC, infra, **KEEP_PUBLISHED)) as svc:
        complaint = await file_complaint(svc)
        cid = complaint["complaint_id"]
        assert await sla_timers(svc, cid) == {
            ("response:0", "warning", True),
            ("resolution:0", "warning", True),
        }

        received = datetime.fromisoformat(complaint["received_at"])
        due = datetime.fromisoformat(complaint["response_due_at"])
        await advance_to(svc, due + SECOND)  # the warning fires, then the first breach
        assert await sla_timers(svc, cid) == {
            ("response:0", "breach_2", True),
            ("resolution:0", "warning", True),
        }
        assert await response_levels(svc, cid) == [("warning", 0), ("breach", 1)]

        await advance_to(svc, received + (due - received) * 1.5 + SECOND)
        assert await sla_timers(svc, cid) == {  # the last level fired: its timer is gone
            ("resolution:0", "warning", True),
        }
        assert await response_levels(svc, cid) == [("warning", 0), ("breach", 1), ("breach", 2)]
