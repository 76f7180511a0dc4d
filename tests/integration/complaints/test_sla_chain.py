"""SLA levels as a chain: a running clock holds one pending timer, and each level that fires
schedules the next. Timers of every level, as earlier versions scheduled them at filing,
still fire each level once."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from services.complaints.app import SPEC
from services.complaints.domain import TIMER_SLA, sla_timer_key
from shared.contracts.topics import SLA_BREACHED, SLA_WARNING
from shared.tables import timers
from shared.testing.services import RunningService, running_service, service_settings
from tests.integration.complaints.conftest import file_complaint
from tests.integration.complaints.timing import advance_to, emitted

pytestmark = pytest.mark.integration
SECOND = timedelta(seconds=1)


async def pending(svc: RunningService, complaint_id: str) -> set[str]:
    async with svc.runtime.sessions() as session:
        keys = await session.scalars(
            select(timers.c.key).where(
                timers.c.kind == TIMER_SLA,
                timers.c.key.startswith(complaint_id),
                timers.c.fired_at.is_(None),
            )
        )
        return {key.removeprefix(f"{complaint_id}:") for key in keys}


async def response_levels(svc: RunningService, complaint_id: str) -> list[tuple[str, int]]:
    warnings = await emitted(svc, SLA_WARNING, complaint_id)
    breaches = await emitted(svc, SLA_BREACHED, complaint_id)
    return [("warning", 0) for d in warnings if d["clock"] == "response"] + [
        ("breach", d["escalation_level"]) for d in breaches if d["clock"] == "response"
    ]


async def test_a_running_clock_holds_one_pending_timer(infra):
    async with running_service(SPEC, service_settings(SPEC, infra)) as svc:
        complaint = await file_complaint(svc)
        cid = complaint["complaint_id"]
        assert await pending(svc, cid) == {"response:warning:0", "resolution:warning:0"}

        received = datetime.fromisoformat(complaint["received_at"])
        due = datetime.fromisoformat(complaint["response_due_at"])
        await advance_to(svc, due + SECOND)  # the warning fires, then the breach it scheduled
        assert await pending(svc, cid) == {"response:breach_2:0", "resolution:warning:0"}
        assert await response_levels(svc, cid) == [("warning", 0), ("breach", 1)]

        await advance_to(svc, received + (due - received) * 1.5 + SECOND)
        assert await pending(svc, cid) == {"resolution:warning:0"}
        assert await response_levels(svc, cid) == [("warning", 0), ("breach", 1), ("breach", 2)]


async def test_timers_of_every_level_scheduled_at_filing_fire_each_level_once(infra):
    settings = service_settings(SPEC, infra, timer_concurrency=1)  # one claim takes them all
    async with running_service(SPEC, settings) as svc:
        complaint = await file_complaint(svc)
        cid = complaint["complaint_id"]
        received = datetime.fromisoformat(complaint["received_at"])
        due = datetime.fromisoformat(complaint["response_due_at"])
        async with svc.runtime.uow() as tx:  # what an earlier version left pending
            await tx.schedule_many(
                TIMER_SLA,
                [
                    (
                        sla_timer_key(cid, "response", level, 0),
                        received + (due - received) * ratio,
                        {"complaint_id": cid, "clock": "response", "level": level},
                    )
                    for level, ratio in (("breach_1", 1), ("breach_2", 1.5))
                ],
            )
        await advance_to(svc, received + (due - received) * 1.5 + SECOND)
        assert await response_levels(svc, cid) == [("warning", 0), ("breach", 1), ("breach", 2)]
        assert await pending(svc, cid) == {"resolution:warning:0"}
