"""Waiting on a complaints service's timers and outbox (instead of sleeping)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from shared.tables import outbox, timers
from shared.testing.services import RunningService
from shared.testing.waiting import eventually


async def advance_to(svc: RunningService, moment: datetime) -> None:
    """Move the service clock to `moment` (never back), then wait for due timers and relay."""
    ahead = (moment - svc.runtime.clock.now()).total_seconds()
    if ahead > 0:
        svc.runtime.clock.advance(ahead)  # type: ignore[attr-defined]
    await settled(svc)


async def settled(svc: RunningService) -> None:
    """Every due timer has fired and every outbox row is published."""

    async def backlog() -> tuple[int, int]:
        async with svc.runtime.sessions() as session:
            due = await session.scalar(
                select(func.count())
                .select_from(timers)
                .where(timers.c.fired_at.is_(None), timers.c.due_at <= svc.runtime.clock.now())
            )
            unsent = await session.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
            )
        return int(due or 0), int(unsent or 0)

    await eventually(backlog, lambda counts: counts == (0, 0))


async def emitted(svc: RunningService, topic: str, complaint_id: str) -> list[dict[str, Any]]:
    """The `data` of every event the service wrote to `topic` about the complaint, in the
    order written (a table read in physical order need not give it: marking a row sent
    may move it)."""
    async with svc.runtime.sessions() as session:
        rows = await session.scalars(
            select(outbox.c.value).where(outbox.c.topic == topic).order_by(outbox.c.id)
        )
        found = [json.loads(value)["data"] for value in rows]
    return [d for d in found if d.get("complaint_id") == complaint_id]
