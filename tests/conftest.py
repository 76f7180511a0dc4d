"""Session-wide fixtures: real infrastructure (started once) and a producer to publish with."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from aiokafka import AIOKafkaProducer

from shared.testing.infra import Infrastructure, test_infrastructure


@pytest.fixture(scope="session")
def infra() -> Iterator[Infrastructure]:
    """Postgres + broker: env vars, testcontainers (opt-in) or embedded."""
    with test_infrastructure() as infrastructure:
        yield infrastructure


@pytest.fixture(scope="session")
async def kafka_producer(infra: Infrastructure) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers, acks="all")
    await producer.start()
    yield producer
    await producer.stop()
