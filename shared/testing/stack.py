"""The whole system in-process: the four services on one infrastructure, moved by one clock.

    async with running_stack(infra) as stack:
        await stack.tiering.http.get(...)
        await stack.advance_clock(3600)   # every service's dev clock, together
        await stack.drained()             # everything consumed and published

Used by the end-to-end tests; the demo and the benchmarks can start the system the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import RecordMetadata

from services.complaints.app import SPEC as COMPLAINTS
from services.notifications.app import SPEC as NOTIFICATIONS
from services.notifications.seed import load_seed
from services.profile.app import SPEC as PROFILE
from services.tiering.app import SPEC as TIERING
from shared.clock import DevClock
from shared.testing.drain import drained
from shared.testing.infra import Infrastructure
from shared.testing.services import RunningService, running_service, service_settings
from shared.testing.waiting import eventually

# In the order events flow through them: each one's output is an input of the later ones.
SPECS = (TIERING, COMPLAINTS, PROFILE, NOTIFICATIONS)


@dataclass
class Stack:
    """The four running services (each in a schema of its own)."""

    tiering: RunningService
    complaints: RunningService
    profile: RunningService
    notifications: RunningService

    @property
    def services(self) -> dict[str, RunningService]:
        """The services by name, in the order events flow through them."""
        return {
            "tiering": self.tiering,
            "complaints": self.complaints,
            "profile": self.profile,
            "notifications": self.notifications,
        }

    def _clocks(self) -> list[DevClock]:
        clocks = [svc.runtime.clock for svc in self.services.values()]
        if not all(isinstance(c, DevClock) for c in clocks):
            raise RuntimeError("the stack's clocks only move in dev mode (STEWARD_ENV=dev)")
        return [c for c in clocks if isinstance(c, DevClock)]

    def now(self) -> datetime:
        """The stack's time: the latest of the services' clocks (they move together)."""
        return max(svc.runtime.clock.now() for svc in self.services.values())

    async def advance_clock(self, seconds: float) -> datetime:
        """Move every service's dev clock forward by `seconds`; due timers fire at once."""
        clocks = self._clocks()
        # Bring any clock that fell behind level first, so all of them share one time.
        latest = max(c.offset for c in clocks)
        for clock in clocks:
            clock.advance((latest - clock.offset).total_seconds() + seconds)
        return self.now()

    async def advance_clock_to(self, moment: datetime) -> datetime:
        """Move every clock forward to `moment` (no-op for a moment already past)."""
        return await self.advance_clock(max((moment - self.now()).total_seconds(), 0.0))

    async def drained(self, *, timeout: float = 60.0, passes: int = 2) -> None:
        """Every consumer has caught up and every outbox is published, along the whole flow.

        One pass per service in flow order; a second pass catches what a later service
        emitted for an earlier one (e.g. profile's ProfileChanged for notifications).
        """
        for _ in range(passes):
            for svc in self.services.values():
                await drained(svc.runtime, timeout=timeout)

    async def consumed(self, sent: Iterable[RecordMetadata], *, timeout: float = 60.0) -> None:
        """Every consumer of the stack that reads these records has committed past them.

        Offsets are committed after the transaction, so whatever the records caused is in
        the services' databases and outboxes by then (exact, unlike the lag read by
        `drained`, which a consumer updates only after its next fetch).
        """
        last: dict[TopicPartition, int] = {}
        for record in sent:
            where = TopicPartition(record.topic, record.partition)
            last[where] = max(last.get(where, -1), record.offset)
        bootstrap = self.tiering.runtime.settings.kafka_bootstrap_servers
        groups = {
            consumer.group_id: [tp for tp in last if tp.topic in consumer.subscription.topics]
            for svc in self.services.values()
            for consumer in svc.runtime.consumers
        }
        await asyncio.gather(
            *(
                _committed_past(bootstrap, group, {tp: last[tp] for tp in tps}, timeout)
                for group, tps in groups.items()
                if tps
            )
        )


async def _committed_past(
    bootstrap: str, group: str, offsets: dict[TopicPartition, int], timeout: float
) -> None:
    """Wait until `group` has committed past each partition's offset."""
    # Never subscribes, so it does not join (or disturb) the group.
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:

        async def behind() -> list[TopicPartition]:
            return [tp for tp, o in offsets.items() if (await reader.committed(tp) or -1) <= o]

        await eventually(behind, lambda late: not late, timeout=timeout, interval=0.1)
    finally:
        await reader.stop()


@asynccontextmanager
async def running_stack(
    infra: Infrastructure,
    *,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    seed: bool = True,
) -> AsyncIterator[Stack]:
    """Start the four services (unique schemas), seed the notification staff, stop them after.

    `overrides` maps a service name to extra settings for it, e.g.
    `{"notifications": {"notifications_daily_cap": 10}}`.
    """
    overrides = overrides or {}
    async with AsyncExitStack() as stack:
        started: dict[str, RunningService] = {}
        for spec in SPECS:
            settings = service_settings(spec, infra, **dict(overrides.get(spec.name, {})))
            started[spec.name] = await stack.enter_async_context(
                running_service(spec, settings, wait_assigned=False)
            )
        # Consumer groups join concurrently (~5 s each on the embedded broker), not in turn.
        await asyncio.gather(
            *(c.wait_assigned() for svc in started.values() for c in svc.runtime.consumers)
        )
        if seed:
            notifications = started["notifications"].runtime
            await load_seed(notifications.settings.database_url, schema=notifications.schema)
        yield Stack(**started)
