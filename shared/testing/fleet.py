"""All four services running in-process at once, for cross-service tests (security, fuzzing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from shared.service import ServiceSpec
from shared.testing.infra import Infrastructure
from shared.testing.services import RunningService, running_service, service_settings


@asynccontextmanager
async def running_fleet(
    specs: Iterable[ServiceSpec],
    infra: Infrastructure,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> AsyncIterator[dict[str, RunningService]]:
    """Start every service (each in a schema of its own), wait until all consumers joined."""
    overrides = overrides or {}
    async with AsyncExitStack() as stack:
        fleet: dict[str, RunningService] = {}
        for spec in specs:
            settings = service_settings(spec, infra, **overrides.get(spec.name, {}))
            fleet[spec.name] = await stack.enter_async_context(
                running_service(spec, settings, wait_assigned=False)
            )
        # The groups join concurrently (~5 s each on the embedded broker), not one by one.
        await asyncio.gather(
            *(c.wait_assigned() for svc in fleet.values() for c in svc.runtime.consumers)
        )
        yield fleet
