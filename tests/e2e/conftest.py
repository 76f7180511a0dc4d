"""The whole system, started once for the end-to-end tests, and watchers on every topic.

Package scope, not session: services still running after this package would consume the
next packages' events and emit outputs of their own for them (every service reads every
topic from the beginning, in a consumer group of its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from shared.contracts.topics import (
    BALANCE_CHANGED,
    COMPLAINT_CALLBACK_DUE,
    COMPLAINT_FILED,
    COMPLAINT_UPDATED,
    CUSTOMER_ACTIVITY,
    CUSTOMER_UPDATED,
    NOTIFICATION_STATUS,
    OPS_ALERTS,
    PROFILE_CALLBACK_DUE,
    PROFILE_CHANGED,
    SERVICES,
    SLA_BREACHED,
    SLA_WARNING,
    TIER_CHANGED,
    dead_letter_topic,
)
from shared.testing.infra import Infrastructure
from shared.testing.kafka import TopicWatcher
from shared.testing.stack import Stack, running_stack
from tests.e2e.support import System

WATCHED = (
    BALANCE_CHANGED,
    COMPLAINT_FILED,
    CUSTOMER_ACTIVITY,
    CUSTOMER_UPDATED,
    TIER_CHANGED,
    COMPLAINT_UPDATED,
    SLA_WARNING,
    SLA_BREACHED,
    COMPLAINT_CALLBACK_DUE,
    PROFILE_CHANGED,
    PROFILE_CALLBACK_DUE,
    NOTIFICATION_STATUS,
    OPS_ALERTS,
    *(dead_letter_topic(s) for s in SERVICES),
)


@pytest.fixture(scope="package")
async def topics(infra: Infrastructure) -> AsyncIterator[dict[str, TopicWatcher]]:
    """A watcher per topic, started before the stack so nothing it emits is missed."""
    watchers = await asyncio.gather(
        *(TopicWatcher(infra.bootstrap_servers, topic).start() for topic in WATCHED)
    )
    yield {w.topic: w for w in watchers}
    await asyncio.gather(*(w.stop() for w in watchers))


@pytest.fixture(scope="package")
async def stack(infra: Infrastructure, topics: dict[str, TopicWatcher]) -> AsyncIterator[Stack]:
    """Tiering, complaints, profile and notifications at once, notification staff seeded."""
    async with running_stack(infra) as running:
        yield running


@pytest.fixture
def system(
    stack: Stack,
    topics: dict[str, TopicWatcher],
    kafka_producer: AIOKafkaProducer,
    infra: Infrastructure,
) -> System:
    return System(stack, topics, kafka_producer, infra.bootstrap_servers)
