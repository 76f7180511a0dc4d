"""Start a fresh test instance at "now": commit its new consumer groups past the backlog.

A service on a new schema has new consumer groups, which would read every topic from the
beginning. Late in a test session the topics hold everything earlier tests published, and
a fresh instance would spend minutes replaying it before it saw its own test's events.
Groups that have committed offsets already (a restarted instance) are left alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from shared.clock import DevClock
from shared.service import ServiceSpec, group_id
from shared.settings import StewardSettings


def consumer_groups(spec: ServiceSpec, settings: StewardSettings) -> dict[str, tuple[str, ...]]:
    """Consumer group → topics of a service instance, learnt without starting or connecting
    anything: wiring only reads settings and builds handlers."""
    runtime = SimpleNamespace(
        settings=settings, state={}, engine=None, sessions=None, uow=None, clock=DevClock()
    )
    wiring = spec.wire(runtime)  # type: ignore[arg-type]
    schema = spec.schema(settings)
    return {group_id(spec.name, s.name, schema): tuple(s.topics) for s in wiring.subscriptions}


async def start_at_now(spec: ServiceSpec, settings: StewardSettings) -> None:
    """Skip the backlog for every consumer group of a service instance (see the module)."""
    await asyncio.gather(
        *(
            skip_backlog(settings.kafka_bootstrap_servers, group, topics)
            for group, topics in consumer_groups(spec, settings).items()
        )
    )


async def skip_backlog(bootstrap_servers: str, group: str, topics: Sequence[str]) -> int:
    """Commit `group` past what `topics` hold now, unless it has committed before.

    The end is found by reading (ListOffsets is unreliable on the embedded broker).
    Returns the number of records skipped.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        for tp in tps:
            if await consumer.committed(tp) is not None:
                return 0  # a restarted instance resumes where it stopped
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        last: dict[TopicPartition, int] = {}
        skipped = idle = 0
        while idle < 3:  # three empty long-polls in a row: the end of every partition
            batches = await consumer.getmany(timeout_ms=200, max_records=20_000)
            for tp, records in batches.items():
                if records:
                    last[tp] = records[-1].offset
                    skipped += len(records)
            idle = 0 if any(batches.values()) else idle + 1
        if last:
            await consumer.commit({tp: OffsetAndMetadata(o + 1, "") for tp, o in last.items()})
        return skipped
    finally:
        await consumer.stop()
