"""The profile service, started once for the module's tests, and watchers on its topics."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from services.profile.app import SPEC
from shared.contracts.topics import PROFILE_CALLBACK_DUE, PROFILE_CHANGED, dead_letter_topic
from shared.testing.infra import Infrastructure
from shared.testing.kafka import TopicWatcher, value_of
from shared.testing.services import RunningService, running_service, service_settings


@pytest.fixture(scope="package")
async def profile_svc(infra: Infrastructure) -> AsyncIterator[RunningService]:
    async with running_service(SPEC, service_settings(SPEC, infra)) as svc:
        yield svc


async def _watch(infra: Infrastructure, topic: str) -> AsyncIterator[TopicWatcher]:
    watcher = await TopicWatcher(infra.bootstrap_servers, topic).start()
    yield watcher
    await watcher.stop()


@pytest.fixture(scope="package")
async def profile_changes(infra: Infrastructure) -> AsyncIterator[TopicWatcher]:
    async for watcher in _watch(infra, PROFILE_CHANGED):
        yield watcher


@pytest.fixture(scope="package")
async def callbacks(infra: Infrastructure) -> AsyncIterator[TopicWatcher]:
    async for watcher in _watch(infra, PROFILE_CALLBACK_DUE):
        yield watcher


@pytest.fixture(scope="package")
async def dead_letters(infra: Infrastructure) -> AsyncIterator[TopicWatcher]:
    async for watcher in _watch(infra, dead_letter_topic("profile")):
        yield watcher


def new_customer() -> str:
    return f"P-{uuid.uuid4().hex[:10]}"


def for_customer(customer: str) -> Callable[[ConsumerRecord[bytes, bytes]], bool]:
    return lambda r: r.key == customer.encode()


def data_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    return value_of(record)["data"]


def at(iso: str) -> str:
    """An RFC 3339 timestamp (UTC) for envelope occurred_at fields."""
    return datetime.fromisoformat(iso).replace(tzinfo=UTC).isoformat()
