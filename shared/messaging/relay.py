"""Outbox relay: publishes committed outbox rows in order, marks them sent, purges old ones.

One relay per schema publishes at a time (a transaction-scoped advisory lock), so rows go
out in id order and per-key order holds across replicas. It wakes on the outbox trigger's
NOTIFY and polls as a fallback. A crash between publish and mark re-publishes: consumers
de-duplicate on event_id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.bulk import any_of
from shared.db import asyncpg_dsn
from shared.faults import backoff_seconds, is_transient
from shared.messaging.producer import Producer
from shared.metrics import OUTBOX_BACKLOG, OUTBOX_PUBLISHED, TRANSIENT_FAILURES
from shared.tables import inbox, outbox, outbox_channel

log = logging.getLogger(__name__)


class OutboxRelay:
    """Moves outbox rows of one service schema to Kafka."""

    def __init__(
        self,
        *,
        service: str,
        schema: str,
        sessions: async_sessionmaker[AsyncSession],
        producer: Producer,
        database_url: str,
        batch_size: int = 1000,
        retention: timedelta = timedelta(days=7),
        poll_interval: float = 1.0,
        purge_interval: float = 300.0,
    ) -> None:
        self.service = service
        self.schema = schema
        self._sessions = sessions
        self._producer = producer
        self._dsn = asyncpg_dsn(database_url)
        self._batch_size = batch_size
        self._retention = retention
        self._poll_interval = poll_interval
        self._purge_interval = purge_interval
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Publish until stopped; survives database and broker outages."""
        listener = asyncio.create_task(self._listen(), name=f"{self.service}-outbox-listen")
        attempt = 0
        last_purge = 0.0
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping.is_set():
                try:
                    published = await self.publish_batch()
                    attempt = 0
                    if loop.time() - last_purge > self._purge_interval:
                        await self.purge()
                        last_purge = loop.time()
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    TRANSIENT_FAILURES.labels(self.service, "relay").inc()
                    log.warning("outbox relay waiting for infrastructure: %r", exc)
                    await self._wait(backoff_seconds(attempt))
                    attempt += 1
                    continue
                if published < self._batch_size:
                    await self._wait(self._poll_interval)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def publish_batch(self) -> int:
        """Publish the oldest unsent rows (up to a batch); return how many were published."""
        self._wake.clear()
        async with self._sessions() as session, session.begin():
            locked = await session.scalar(
                select(func.pg_try_advisory_xact_lock(func.hashtext(f"outbox.{self.schema}")))
            )
            if not locked:
                return 0
            rows = (
                await session.execute(
                    select(
                        outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.value, outbox.c.headers
                    )
                    .where(outbox.c.sent_at.is_(None))
                    .order_by(outbox.c.id)
                    .limit(self._batch_size)
                )
            ).all()
            if not rows:
                OUTBOX_BACKLOG.labels(self.service).set(0)
                return 0
            await self._producer.send_all(
                (
                    row.topic,
                    row.key,
                    row.value,
                    [(name, value.encode()) for name, value in row.headers],
                )
                for row in rows
            )
            await session.execute(
                update(outbox)
                .where(any_of(outbox.c.id, (row.id for row in rows)))
                .values(sent_at=func.now())
            )
        for topic, count in Counter(row.topic for row in rows).items():
            OUTBOX_PUBLISHED.labels(self.service, topic).inc(count)
        return len(rows)

    async def purge(self) -> tuple[int, int]:
        """Delete sent outbox rows and inbox ids older than the retention."""
        cutoff = func.now() - text(f"interval '{int(self._retention.total_seconds())} seconds'")
        async with self._sessions() as session, session.begin():
            sent: Any = await session.execute(
                delete(outbox).where(outbox.c.sent_at.is_not(None), outbox.c.sent_at < cutoff)
            )
            seen: Any = await session.execute(delete(inbox).where(inbox.c.processed_at < cutoff))
            backlog = await session.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
            )
        OUTBOX_BACKLOG.labels(self.service).set(backlog or 0)
        return sent.rowcount, seen.rowcount

    async def _listen(self) -> None:
        """Hold a LISTEN connection; reconnect when it drops."""
        attempt = 0
        while not self._stopping.is_set():
            try:
                conn = await asyncpg.connect(self._dsn)
                try:
                    await conn.add_listener(
                        outbox_channel(self.schema), lambda *_: self._wake.set()
                    )
                    closed = asyncio.Event()
                    conn.add_termination_listener(lambda *_, closed=closed: closed.set())
                    attempt = 0
                    self._wake.set()  # rows may have arrived while we were not listening
                    await _first(closed.wait(), self._stopping.wait())
                finally:
                    await conn.close()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.debug("outbox listener reconnecting: %r", exc)
                await self._wait(backoff_seconds(attempt))
                attempt += 1

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    """Wait until the first of several waits completes; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
