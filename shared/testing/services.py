"""Run a real service in-process against the test infrastructure, with an HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from shared.service import Runtime, ServiceSpec
from shared.settings import TEST_JWT_SECRET, StewardSettings
from shared.testing.backlog import start_at_now
from shared.testing.infra import Infrastructure
from shared.web.app import create_app
from shared.web.auth import Role, mint_token

# Settings under which a service keeps what its relay published (marked sent) instead of
# deleting it: for tests that read back what one schema emitted, beside other tests'
# instances of the same service publishing to the same topics.
KEEP_PUBLISHED: dict[str, Any] = {"outbox_keep_sent_hours": 24}


@dataclass
class RunningService:
    """A started service: its runtime (engine, clock, consumers) and an HTTP client."""

    app: FastAPI
    runtime: Runtime
    http: httpx.AsyncClient

    @staticmethod
    def token(role: Role, **claims: Any) -> dict[str, str]:
        """Authorization header for a test token."""
        return {"Authorization": f"Bearer {mint_token(TEST_JWT_SECRET, role=role, **claims)}"}

    async def advance_clock(self, seconds: float) -> None:
        """Move the service's dev clock forward through its admin API (due timers fire)."""
        response = await self.http.post(
            "/admin/clock", json={"advance_seconds": seconds}, headers=self.token("admin")
        )
        assert response.status_code == 200, response.text


def service_settings(
    spec: ServiceSpec, infra: Infrastructure, *, schema: str | None = None, **overrides: Any
) -> StewardSettings:
    """Settings pointing at the test infrastructure, in a schema unique to this run."""
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": infra.bootstrap_servers,
        "database_url": infra.database_url,
        "steward_jwt_secret": TEST_JWT_SECRET,
        "steward_env": "dev",
        "schema_name": schema or infra.new_schema(spec.name),
        "consumer_batch_size": 200,
    }
    return spec.settings(**(values | overrides))


@asynccontextmanager
async def running_service(
    spec: ServiceSpec,
    settings: StewardSettings,
    *,
    wait_assigned: bool = True,
    migrate: bool = True,
    from_now: bool = True,
) -> AsyncIterator[RunningService]:
    """Start the service (migrations, relay, consumers, timers) and stop it afterwards.

    `from_now`: a first start skips what the topics already hold (see testing.backlog);
    pass False for a test that publishes its events before starting the service.
    """
    app = create_app(spec, settings, migrate=migrate)
    if from_now:
        await start_at_now(spec, settings)
    async with app.router.lifespan_context(app):
        rt: Runtime = app.state.runtime
        if wait_assigned:
            await asyncio.gather(*(c.wait_assigned() for c in rt.consumers))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield RunningService(app, rt, client)
