"""Reconciliation helpers: which events one service instance (one schema) emitted."""

from __future__ import annotations

import json

from sqlalchemy import select

from shared.db import create_engine
from shared.tables import outbox


async def emitted_ids(database_url: str, schema: str, topic: str) -> set[str]:
    """Event ids this schema's outbox wrote to `topic` — other instances of the same service
    (other tests' schemas) consume the same inbound topics and publish to the same topic."""
    engine = create_engine(database_url, schema, application_name="test-reconcile")
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(outbox.c.value).where(outbox.c.topic == topic))
            return {json.loads(value)["event_id"] for (value,) in rows}
    finally:
        await engine.dispose()
