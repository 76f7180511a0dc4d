"""Notifications: a burst of CallbackDue events through the sandbox provider, messages/s."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select

from bench.kit import envelope, publish_all, service_process, wait_until
from services.notifications import store
from services.notifications.app import SPEC as NOTIFICATIONS
from services.notifications.handlers import DELIVER
from services.notifications.seed import load_seed
from shared.contracts.topics import COMPLAINT_CALLBACK_DUE
from shared.tables import timers
from shared.testing.infra import Infrastructure

ASSIGNEES = ("E001", "E002", "E003", "E010", "E012", "E013", "E015", "E017", "E090", "E100")


def callbacks(count: int) -> list[tuple[bytes, bytes]]:
    """`count` complaint follow-up callbacks, each for its own complaint and customer."""
    run = uuid.uuid4().hex[:6]
    due = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    messages = []
    for n in range(count):
        customer = f"CN{run}-{n:07d}"
        data = {
            "customer_id": customer,
            "reason": "complaint_followup",
            "complaint_id": f"CMP{run}-{n:07d}",
            "sequence": 1,
            "assignee_id": ASSIGNEES[n % len(ASSIGNEES)],
            "due_at": due,
        }
        messages.append((customer.encode(), envelope(COMPLAINT_CALLBACK_DUE, data)))
    return messages


async def burst(infra: Infrastructure, count: int) -> dict[str, Any]:
    """Publish the burst to a notifications service running as its own process, as
    deployed (its own settings, its own core); time until all are sent."""
    messages = callbacks(count)
    async with service_process(NOTIFICATIONS, infra) as server:
        await load_seed(infra.database_url, schema=server.schema)
        n, s = store.notifications, store.sandbox_messages

        async def sent() -> tuple[int, int]:
            async with server.sessions() as session:
                delivered = await session.scalar(select(func.count()).select_from(s))
                finished = await session.scalar(
                    select(func.count()).select_from(n).where(n.c.status == "sent")
                )
            return int(delivered or 0), int(finished or 0)

        started = time.perf_counter()
        await publish_all(infra.bootstrap_servers, COMPLAINT_CALLBACK_DUE, messages)
        published = time.perf_counter() - started

        delivering = exists().where(timers.c.kind == DELIVER, timers.c.fired_at.is_(None))

        async def sent_unless_delivering() -> int:
            """Notifications sent; -1 while deliveries are pending. The probe shares the
            service's database: EXISTS on the pending-timer index stops at the first row,
            where counting two tables growing to 50,000 rows every 250 ms did not."""
            async with server.sessions() as session:
                if await session.scalar(select(delivering)):
                    return -1
            return (await sent())[1]

        await wait_until(sent_unless_delivering, lambda n: n >= count, timeout=3600, every=0.25)
        elapsed = time.perf_counter() - started
        delivered, finished = await sent()
        async with server.sessions() as session:
            status: dict[str, int] = dict(
                (await session.execute(select(n.c.status, func.count()).group_by(n.c.status))).all()
            )
    return {
        "seconds": elapsed,
        "per_second": count / elapsed,
        "publish_seconds": published,
        "sandbox_messages": delivered,
        "sent": finished,
        "statuses": status,
    }
