"""Integration fixtures: the probe service, started once per session in its own schema."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from shared.db import create_engine
from shared.testing.infra import Infrastructure
from shared.testing.services import RunningService, running_service, service_settings
from tests.integration.probe import ProbeHandler, create_probe_schema, probe_spec


async def make_probe_schema(infra: Infrastructure, schema: str) -> None:
    engine = create_engine(infra.database_url, schema, application_name="test-setup")
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(create_probe_schema)
    await engine.dispose()


@pytest.fixture(scope="package")
def probe_handler() -> ProbeHandler:
    return ProbeHandler()


@pytest.fixture(scope="package")
async def probe(
    infra: Infrastructure, probe_handler: ProbeHandler
) -> AsyncIterator[RunningService]:
    """A running service with the platform's consumer runner, relay and timer worker."""
    spec = probe_spec(probe_handler)
    schema = infra.new_schema("probe")
    await make_probe_schema(infra, schema)
    settings = service_settings(spec, infra, schema=schema, consumer_batch_size=50)
    async with running_service(spec, settings, migrate=False) as service:
        yield service
