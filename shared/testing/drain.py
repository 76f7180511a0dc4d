"""Wait until a running service has consumed everything, fired its due timers and published
its outbox."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from shared.service import Runtime
from shared.tables import outbox, timers
from shared.testing.waiting import eventually


async def unsent(rt: Runtime) -> int:
    """Outbox rows not yet published."""
    async with rt.sessions() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
            )
            or 0
        )


async def drained(rt: Runtime, *, timeout: float = 60.0) -> None:
    """Every consumer has caught up with what was published before this call; every outbox
    row is published."""
    since = time.time()

    async def behind() -> list[str]:
        return [c.member_name for c in rt.consumers if not c.caught_up_since(since)]

    await eventually(behind, lambda late: not late, timeout=timeout)
    await eventually(lambda: unsent(rt), lambda n: n == 0, timeout=timeout)


async def due_timers(rt: Runtime) -> int:
    """Timers due by the service's clock and not fired yet (being fired, they count)."""
    async with rt.sessions() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(timers)
                .where(timers.c.fired_at.is_(None), timers.c.due_at <= rt.clock.now())
            )
            or 0
        )


async def settled(rt: Runtime, *, timeout: float = 60.0) -> None:
    """`drained`, after every timer due by the service's clock has fired: what a test
    checks once it moved the clock, before it asserts that something did not happen."""
    await eventually(lambda: due_timers(rt), lambda n: n == 0, timeout=timeout)
    await drained(rt, timeout=timeout)
