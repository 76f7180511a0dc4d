"""Helpers shared by the benchmark sections: consumer groups, steady producers, percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts.topics import TOPICS
from shared.db import create_engine, session_factory
from shared.devstack.broker import free_port
from shared.metrics import CONSUMER_LAG
from shared.service import ServiceSpec
from shared.tables import outbox
from shared.testing.backlog import start_at_now
from shared.testing.infra import Infrastructure
from shared.testing.services import (
    TEST_JWT_SECRET,
    service_settings,
)
from shared.web.auth import mint_token

ROOT = Path(__file__).resolve().parent.parent
LAG_METRIC = next(iter(CONSUMER_LAG.describe())).name


def envelope(topic: str, data: dict[str, Any]) -> bytes:
    """A JSON envelope for `topic` (as an upstream system would publish it)."""
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": TOPICS[topic].event_type,
            "schema_version": 1,
            "occurred_at": datetime.now(UTC).isoformat(),
            "producer": "bench",
            "data": data,
        }
    ).encode()


async def producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    kafka = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **options)
    await kafka.start()
    return kafka


async def publish_all(
    bootstrap: str, topic: str, messages: Sequence[tuple[bytes, bytes]], **options: Any
) -> None:
    """Publish pre-encoded (key, value) messages as fast as possible and wait for the acks."""
    kafka = await producer(bootstrap, linger_ms=20, max_batch_size=512 * 1024, **options)
    try:
        pending = []
        for key, value in messages:
            pending.append(await kafka.send(topic, value, key=key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await kafka.stop()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The load generator's cyclic garbage collector off while it paces a measured stream.

    This process holds the workloads: its full collections took 108 to 197 ms during the
    60 s latency stream (gc.callbacks), each a stall of the publisher that was counted in
    the latencies it measured and then caught up as a burst. The stream makes little cyclic
    garbage; the collector runs again once it ends.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def wait_until(probe: Any, done: Any, *, timeout: float, every: float = 0.05) -> Any:
    """Poll `await probe()` until `done(value)`; raises TimeoutError with the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"still {value!r} after {timeout:.0f}s")
        await asyncio.sleep(every)


@dataclass
class Server:
    """A service running as its own OS processes (uvicorn), as in production, on its own
    schema: one per replica, each on its own port."""

    name: str
    ports: tuple[int, ...]
    schema: str
    database_url: str
    sessions: async_sessionmaker[AsyncSession]
    # One client for every probe: a new httpx client costs about 18 ms of CPU (its TLS
    # context), and the lag was polled every 0.25 s on the cores the service runs on.
    http: httpx.AsyncClient

    @property
    def base_url(self) -> str:
        """The first replica's address (admin calls, metrics)."""
        return f"http://127.0.0.1:{self.ports[0]}"

    def token(self, role: str, **claims: Any) -> str:
        return mint_token(TEST_JWT_SECRET, role=role, **claims)  # type: ignore[arg-type]

    async def lag(self) -> int | None:
        """Messages its consumers are behind, from every replica's /metrics; None while a
        replica reports no partition's lag yet. A progress probe only: a partition not yet
        fetched is missing from the sum, so callers confirm the end with an exact count."""
        total = 0
        for port in self.ports:
            text = (await self.http.get(f"http://127.0.0.1:{port}/metrics")).text
            ours = "\n".join(line for line in text.splitlines() if LAG_METRIC in line)
            lags = [
                sample.value
                for family in text_string_to_metric_families(ours)
                if family.name == LAG_METRIC
                for sample in family.samples
            ]
            if not lags:
                return None
            total += int(sum(lags))
        return total

    async def unsent(self) -> int:
        async with self.sessions() as session:
            count = await session.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
            )
        return int(count or 0)

    async def settled(self, timeout: float = 600) -> None:
        """Its consumers have caught up and its outbox is empty."""
        await wait_until(self.lag, lambda n: n == 0, timeout=timeout, every=0.25)
        await wait_until(self.unsent, lambda n: n == 0, timeout=timeout, every=0.25)


@asynccontextmanager
async def service_process(
    spec: ServiceSpec, infra: Infrastructure, *, replicas: int = 1, from_start: bool = False
) -> AsyncIterator[Server]:
    """`python -m services.<name>` on a new schema, as in production: `replicas` processes
    sharing the schema and the consumer groups, each on its own port. Consumers start at
    the topic ends unless `from_start`."""
    schema = f"{spec.name}_b{uuid.uuid4().hex[:6]}"
    if not from_start:
        await start_at_now(spec, service_settings(spec, infra, schema=schema))
    ports = [free_port() for _ in range(replicas)]
    processes = [await _start_process(spec, infra, schema, port) for port in ports]
    engine = create_engine(infra.database_url, schema, application_name="bench")
    try:
        await asyncio.gather(
            *(_until_ready(spec, p, port) for p, port in zip(processes, ports, strict=True))
        )
        async with httpx.AsyncClient() as http:
            sessions = session_factory(engine)
            yield Server(spec.name, tuple(ports), schema, infra.database_url, sessions, http)
    finally:
        await asyncio.gather(*(_stop_process(p) for p in processes))
        try:
            # Its rows, dead ones included, would otherwise keep autovacuum busy during what
            # runs next: after the complaints section, the notification burst went out at
            # 2,363 and 2,257 msg/s with its schemas kept, 2,854 and 2,825 with them dropped
            # (2,642 to 2,833 alone); x2 breaches took 20.1 and 17.9 s, then 17.1 and 15.9.
            async with engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            await engine.dispose()


async def _start_process(
    spec: ServiceSpec, infra: Infrastructure, schema: str, port: int
) -> asyncio.subprocess.Process:
    env = os.environ | {
        "DATABASE_URL": infra.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "STEWARD_JWT_SECRET": TEST_JWT_SECRET,
        "STEWARD_ENV": "dev",
        "SCHEMA_NAME": schema,
        f"{spec.name.upper()}_PORT": str(port),
        "STEWARD_LOG_LEVEL": "WARNING",
    }
    with _log_path(spec, port).open("wb") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"services.{spec.name}", cwd=ROOT, env=env, stdout=log, stderr=log
        )


def _log_path(spec: ServiceSpec, port: int) -> Path:
    return Path(tempfile.gettempdir()) / f"bench-{spec.name}-{port}.log"


async def _until_ready(spec: ServiceSpec, process: asyncio.subprocess.Process, port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

        async def ready() -> int:
            if process.returncode is not None:
                raise RuntimeError(f"{spec.name} process exited; see {_log_path(spec, port)}")
            try:
                return (await client.get("/readyz")).status_code
            except httpx.TransportError:
                return 0

        await wait_until(ready, lambda s: s == 200, timeout=120, every=0.2)


async def _stop_process(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have died already: say why, not this
        process.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(process.wait(), timeout=20)
    except TimeoutError:
        process.kill()
        await process.wait()


@asynccontextmanager
async def service_processes(
    infra: Infrastructure, *specs: ServiceSpec
) -> AsyncIterator[list[Server]]:
    """Several service processes, started one after the other (migrations take catalog locks)."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(service_process(s, infra)) for s in specs]
