"""Publish events and await events on topics, for tests and `steward publish`."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from shared.contracts.topics import TOPICS
from shared.testing.waiting import eventually


def make_event(topic: str, data: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    """An envelope (as JSON-ready dict) for `topic` around `data`; fields can be overridden."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": TOPICS[topic].event_type,
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "producer": "test",
        "data": data,
    } | envelope


async def publish(
    producer: AIOKafkaProducer,
    topic: str,
    event: dict[str, Any] | bytes,
    *,
    key: str | bytes | None = None,
) -> None:
    """Publish one event (dict → JSON envelope, bytes → as is) and wait for the ack."""
    if isinstance(event, dict):
        value = json.dumps(event).encode()
        key = key if key is not None else str(event.get("data", {}).get("customer_id", ""))
        headers = [
            ("event_type", str(event.get("event_type", "")).encode()),
            ("event_id", str(event.get("event_id", "")).encode()),
            ("schema_version", str(event.get("schema_version", 1)).encode()),
        ]
    else:
        value, headers = event, []
    raw_key = key.encode() if isinstance(key, str) else key
    await producer.send_and_wait(topic, value, key=raw_key, headers=headers)


Predicate = Callable[[ConsumerRecord[bytes, bytes]], bool]


class TopicWatcher:
    """Reads a topic from its current end (no consumer group) and keeps every record seen."""

    FETCH_WAIT_MS = 20

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.topic = topic
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            enable_auto_commit=False,
            fetch_max_wait_ms=self.FETCH_WAIT_MS,
        )
        self._next: dict[TopicPartition, int] = {}  # offset after the last record kept
        self._arrived = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self, *, from_beginning: bool = False) -> TopicWatcher:
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        if from_beginning:
            await self._consumer.seek_to_beginning(*tps)
        else:
            await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve positions now, so later messages are never skipped
            self._next[tp] = await self._consumer.position(tp)
        self._task = asyncio.create_task(self._pump())
        return self

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _pump(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            if batches:
                async with self._arrived:
                    for tp, records in batches.items():
                        self.records.extend(records)
                        self._next[tp] = records[-1].offset + 1
                    self._arrived.notify_all()

    async def caught_up(self, *, timeout: float = 45.0) -> None:
        """Wait until every record published before this call is kept: each partition's
        last kept offset reached a high-water mark the broker read after the call (a fetch
        response comes at most the fetch wait after its request). For a test that asserts
        a record did not come."""
        since = time.time() + self.FETCH_WAIT_MS / 1000 + 0.1

        async def behind() -> list[TopicPartition]:
            late = []
            for tp, kept in self._next.items():
                highwater = self._consumer.highwater(tp)
                polled = self._consumer.last_poll_timestamp(tp)  # ms; None before a fetch
                if highwater is None or polled is None or polled / 1000 < since or kept < highwater:
                    late.append(tp)
            return late

        await eventually(behind, lambda late: not late, timeout=timeout, interval=0.02)

    def matching(self, predicate: Predicate) -> list[ConsumerRecord[bytes, bytes]]:
        return [r for r in self.records if predicate(r)]

    async def wait_for(
        self, predicate: Predicate, *, count: int = 1, timeout: float = 45.0
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Records matching `predicate`, once at least `count` have arrived."""

        async def enough() -> list[ConsumerRecord[bytes, bytes]]:
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.matching(predicate)) >= count)
                return self.matching(predicate)

        try:
            return await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            seen = len(self.matching(predicate))
            raise AssertionError(
                f"{self.topic}: {seen} of {count} expected records after {timeout}s"
            ) from None


def value_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    """The JSON value of a record."""
    return json.loads(record.value or b"null")  # type: ignore[no-any-return,unused-ignore]


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in record.headers:
        if key == name:
            return value.decode()
    return None


async def committed_offset(bootstrap_servers: str, group: str, topic: str, partition: int) -> int:
    """The offset `group` has committed on a partition (-1 when none)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()  # never subscribes, so it does not join (or disturb) the group
    try:
        offset = await consumer.committed(TopicPartition(topic, partition))
    finally:
        await consumer.stop()
    return -1 if offset is None else int(offset)


@dataclass(frozen=True)
class Census:
    """What a topic holds: how many records, and the latest record timestamp (the producer's
    clock when it queued the record), in epoch milliseconds."""

    count: int
    latest_ms: int | None


async def census(bootstrap_servers: str, topic: str) -> Census:
    """Count a topic's records and find the latest timestamp, by reading it all (ListOffsets
    is unreliable on Tansu)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        count, latest = 0, None
        idle = 0
        while idle < 3:  # three empty long-polls in a row: the end of every partition
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            records = [r for rs in batches.values() for r in rs]
            count += len(records)
            for r in records:
                if latest is None or r.timestamp > latest:
                    latest = r.timestamp
            idle = 0 if records else idle + 1
        return Census(count, latest)
    finally:
        await consumer.stop()


async def count_records(bootstrap_servers: str, topic: str) -> int:
    """Records on a topic."""
    return (await census(bootstrap_servers, topic)).count
