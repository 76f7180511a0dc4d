"""Composition root of a service process: settings → engine, producer, consumers, relay, timers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from shared import migrations
from shared.clock import Clock, DevClock
from shared.db import create_engine, session_factory
from shared.faults import backoff_seconds
from shared.messaging.consumer import ConsumerRunner, Subscription
from shared.messaging.producer import Producer
from shared.messaging.relay import OutboxRelay
from shared.settings import StewardSettings
from shared.timers import TimerCrew, TimerHandler, TimerWorker
from shared.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Wiring:
    """What a service plugs into the platform: its consumers and its timer handlers."""

    subscriptions: list[Subscription] = field(default_factory=list)
    timer_handlers: dict[str, TimerHandler] = field(default_factory=dict)


def group_id(service: str, subscription: str, schema: str) -> str:
    """`<service>.<consumer>`; an instance on another schema (tests, side-by-side runs)
    keeps its own state, so it gets its own group instead of half the partitions."""
    group = f"{service}.{subscription}"
    return group if schema == service else f"{group}@{schema}"


@dataclass(frozen=True)
class ServiceSpec:
    """A service, described: name, settings, migrations, wiring and HTTP routes."""

    name: str
    settings: type[StewardSettings]
    migrations: Path
    wire: Callable[[Runtime], Wiring]
    routers: tuple[APIRouter, ...] = ()

    def schema(self, settings: StewardSettings) -> str:
        """The Postgres schema an instance keeps its state in: its own name unless set."""
        return settings.schema_name or self.name


class Runtime:
    """Everything one running service process holds; started and stopped by the app lifespan."""

    def __init__(self, spec: ServiceSpec, settings: StewardSettings) -> None:
        self.spec = spec
        self.settings = settings
        self.name = spec.name
        self.schema = spec.schema(settings)
        self.clock: Clock = DevClock() if settings.is_dev else Clock()
        self.engine = create_engine(
            settings.database_url, self.schema, application_name=f"steward-{spec.name}"
        )
        self.sessions = session_factory(self.engine)
        self.uow = UnitOfWork(self.sessions, self.clock, spec.name)
        self.producer = Producer(
            settings.kafka_bootstrap_servers,
            idempotence=settings.steward_kafka_idempotence,
            client_id=f"steward-{spec.name}",
        )
        self.relay = OutboxRelay(
            service=spec.name,
            schema=self.schema,
            sessions=self.sessions,
            producer=self.producer,
            database_url=settings.database_url,
            batch_size=settings.outbox_batch_size,
            retention=timedelta(hours=settings.retention_hours),
            keep_sent=timedelta(hours=settings.outbox_keep_sent_hours),
        )
        self.uow.on_outbox_written(self.relay.wake)
        self.state: dict[str, Any] = {}  # service-specific singletons (policy caches, clients)
        wiring = spec.wire(self)
        self.consumers = [
            ConsumerRunner(
                service=spec.name,
                subscription=sub,
                uow=self.uow,
                bootstrap_servers=settings.kafka_bootstrap_servers,
                batch_size=settings.consumer_batch_size,
                fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
                pace=settings.consumer_pace_ms / 1000,
                group_id=group_id(spec.name, sub.name, self.schema),
                member=member,
            )
            for sub in wiring.subscriptions
            for member in range(settings.consumer_concurrency)
        ]
        crew = TimerCrew(self.uow)
        self.timers = [
            TimerWorker(
                service=spec.name,
                uow=self.uow,
                clock=self.clock,
                handlers=wiring.timer_handlers,
                crew=crew,
            )
            for _ in range(settings.timer_concurrency)
        ]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, *, migrate: bool = True) -> None:
        """Migrate, connect the producer, then start the background loops."""
        if migrate:
            await migrations.upgrade(self.spec.migrations, self.settings.database_url, self.schema)
        await self._start_producer()
        loops: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("relay", self.relay.run),
            *((f"timers-{n}", t.run) for n, t in enumerate(self.timers)),
            *((c.member_name, c.run) for c in self.consumers),
        ]
        self._tasks = [
            asyncio.create_task(self._supervise(name, loop), name=f"{self.name}:{name}")
            for name, loop in loops
        ]

    async def stop(self) -> None:
        """Stop the loops (uncommitted batches are simply re-read later), then disconnect."""
        for consumer in self.consumers:
            consumer.stop()
        self.relay.stop()
        for worker in self.timers:
            worker.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.producer.stop()
        await self.engine.dispose()

    async def database_ready(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def _start_producer(self) -> None:
        attempt = 0
        while True:
            try:
                await self.producer.start()
                return
            except Exception as exc:
                log.warning("waiting for the broker: %r", exc)
                await asyncio.sleep(backoff_seconds(attempt, cap=5))
                attempt += 1

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Restart a background loop that crashed (a bug must not silently stop a consumer)."""
        attempt = 0
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s loop crashed; restarting", name)
                await asyncio.sleep(backoff_seconds(attempt, base=1, cap=30))
                attempt += 1
