"""A test run against a shared Postgres (DATABASE_URL) leaves none of its schemas behind."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from shared.db import asyncpg_dsn
from shared.testing.infra import Infrastructure
from shared.testing.infra import test_infrastructure as a_test_session

pytestmark = pytest.mark.integration


async def _schemas(database_url: str) -> set[str]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return {r[0] for r in await conn.fetch("SELECT nspname FROM pg_namespace")}
    finally:
        await conn.close()


async def _create(database_url: str, schema: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"; CREATE TABLE "{schema}".t (id int)')
    finally:
        await conn.close()


def _a_run_on_external_servers(infra: Infrastructure, others: str) -> list[str]:
    """A whole test session on the same servers, given as DATABASE_URL and the broker's."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DATABASE_URL", infra.database_url)
        env.setenv("KAFKA_BOOTSTRAP_SERVERS", infra.bootstrap_servers)
        with a_test_session() as run:
            assert run.database_source == "DATABASE_URL"
            made = [run.new_schema("scratch"), run.new_schema("scratch")]
            for schema in made:
                asyncio.run(_create(run.database_url, schema))
            asyncio.run(_create(run.database_url, others))
            assert set(made) | {others} <= asyncio.run(_schemas(run.database_url))
    return made


async def test_a_run_drops_the_schemas_it_made_and_no_others(infra):
    others = infra.new_schema("not_this_runs")
    made = await asyncio.to_thread(_a_run_on_external_servers, infra, others)
    left = await _schemas(infra.database_url)
    assert not set(made) & left
    assert others in left
