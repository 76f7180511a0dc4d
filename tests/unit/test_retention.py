"""Inbox ids outlive the messages they guard: a replay from the oldest message a consumed
topic keeps must meet the ids of the events it already processed."""

from __future__ import annotations

import pytest

from shared.devstack.topics import load_topics
from shared.service import Runtime
from shared.testing.stack import SPECS

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
async def test_inbox_ids_are_kept_as_long_as_the_consumed_topics_keep_messages(spec):
    settings = spec.settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none",
        steward_jwt_secret="unit",
    )
    consumed = {t for c in Runtime(spec, settings).consumers for t in c.subscription.topics}
    kept_ms = {t.name: t.retention_ms for t in load_topics()}
    assert consumed
    for topic in consumed:
        assert kept_ms[topic] <= settings.retention_hours * 3_600_000, topic
