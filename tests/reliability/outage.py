"""Helpers of the outage tests: a steady publisher and a readiness probe running alongside."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from shared.testing.kafka import publish


async def steady(
    producer: AIOKafkaProducer, topic: str, events: Sequence[dict[str, Any]], seconds: float
) -> None:
    """Publish `events` in order, spread evenly over about `seconds`."""
    chunks = max(1, int(seconds / 0.25))
    size = max(1, -(-len(events) // chunks))
    for start in range(0, len(events), size):
        for event in events[start : start + size]:
            await publish(producer, topic, event)
        await asyncio.sleep(0.25)


@dataclass
class ReadinessProbe:
    """Polls GET /readyz every `interval` s and keeps (monotonic time, status) per answer."""

    http: httpx.AsyncClient
    interval: float = 0.25
    answers: list[tuple[float, int]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def start(self) -> ReadinessProbe:
        self._task = asyncio.create_task(self._poll())
        return self

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _poll(self) -> None:
        while True:
            try:
                response = await self.http.get("/readyz", timeout=5)
                self.answers.append((time.monotonic(), response.status_code))
            except httpx.HTTPError:
                self.answers.append((time.monotonic(), 0))  # no answer at all
            await asyncio.sleep(self.interval)

    def between(self, start: float, end: float) -> list[int]:
        """Statuses answered in [start, end]."""
        return [status for at, status in self.answers if start <= at <= end]


@dataclass
class NetworkLink:
    """A TCP proxy in front of the broker that can be cut.

    While cut, the port refuses connections and every open one is closed: to a service the
    broker is gone, yet the broker keeps its records, topics and committed offsets — as a
    real cluster does across a network partition or a rolling outage.
    """

    port: int
    target_port: int
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def restore(self) -> NetworkLink:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def cut(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, upstream[1])
        self._writers.update(pair)
        try:
            await asyncio.gather(_pipe(reader, upstream[1]), _pipe(upstream[0], writer))
        finally:
            for end in pair:
                end.transport.abort()
                self._writers.discard(end)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()
