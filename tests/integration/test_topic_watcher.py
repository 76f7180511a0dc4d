"""TopicWatcher.caught_up: once it returns, every record published before it was called
is kept (tests rely on it before asserting that a record did not come)."""

from __future__ import annotations

import uuid

import pytest

from shared.devstack.topics import TopicDefinition, create_topics
from shared.testing.kafka import TopicWatcher

pytestmark = pytest.mark.integration


async def test_caught_up_returns_once_every_record_published_before_is_kept(infra, kafka_producer):
    topic = f"test.watcher-{uuid.uuid4().hex[:8]}"
    await create_topics(infra.bootstrap_servers, [TopicDefinition(topic, 3, 1, 3_600_000)])
    watcher = await TopicWatcher(infra.bootstrap_servers, topic).start()
    try:
        for round_ in range(3):
            sent = [
                await kafka_producer.send_and_wait(topic, f"{round_}-{n}".encode(), partition=n % 3)
                for n in range(30)
            ]
            await watcher.caught_up()
            kept = {(r.partition, r.offset) for r in watcher.records}
            assert {(m.partition, m.offset) for m in sent} <= kept
        assert len(watcher.records) == 90  # nothing from before the start, nothing twice
    finally:
        await watcher.stop()
