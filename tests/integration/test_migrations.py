"""Migrations: replicas that start together on a new database all come up."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text

from shared.db import create_engine, ensure_schema

pytestmark = pytest.mark.integration


async def test_replicas_creating_a_new_schema_at_once_all_succeed(infra):
    """Each replica's start-up first ensures its schema exists; found by two tiering
    processes starting together in the benchmark (the second failed on pg_namespace).
    The window is one round trip wide, so several rounds of several replicas."""
    for _ in range(5):
        schema = f"tiering_m{uuid.uuid4().hex[:8]}"
        engines = [
            create_engine(infra.database_url, schema, application_name=f"test-replica-{n}")
            for n in range(6)
        ]
        try:
            await asyncio.gather(*(ensure_schema(engine, schema) for engine in engines))
            async with engines[0].connect() as conn:
                found = await conn.scalar(
                    text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema}
                )
        finally:
            await asyncio.gather(*(engine.dispose() for engine in engines))
        assert found == 1
