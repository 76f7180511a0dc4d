"""The one Kafka producer a service process owns (acks=all; idempotence is a setting)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from murmurhash2 import murmurhash2

Headers = Sequence[tuple[str, bytes]]
Message = tuple[str, bytes | None, bytes, Headers]  # topic, key, value, headers

_JAVA_SEED = 0x9747B28C  # the seed of org.apache.kafka.common.utils.Utils.murmur2

# A record batch holds up to this much per partition. With aiokafka's 16 KB a relay batch
# of 1,000 outbox rows (~1 KB each, over 36 partitions) made ~50 record batches, and a
# partition's second batch waited for the first to go out: one produce request per few
# batches, 3,691 requests for 300,000 rows. At 256 KB each partition's share fits one batch
# and a relay batch goes out in one request (307 for the same rows). Apache Kafka accepts
# batches up to its `message.max.bytes`, 1 MB by default.
BATCH_BYTES = 256 * 1024


def partition_for(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """The Java client's default partition of a key, as aiokafka's DefaultPartitioner
    computes it, with murmur2 in C (0.2 µs per key; aiokafka's pure-Python hash 3.6 µs)."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[(murmurhash2(key, _JAVA_SEED) & 0x7FFFFFFF) % len(all_partitions)]


class Producer:
    """Thin wrapper so every service produces with the same durability settings."""

    def __init__(self, bootstrap_servers: str, *, idempotence: bool, client_id: str) -> None:
        self._kafka = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=idempotence,
            linger_ms=2,
            max_batch_size=BATCH_BYTES,
            request_timeout_ms=15000,
            partitioner=partition_for,
        )

    async def start(self) -> None:
        await self._kafka.start()

    async def stop(self) -> None:
        await self._kafka.stop()

    async def send_all(self, messages: Iterable[Message]) -> None:
        """Produce messages in their order and wait until the broker acknowledged them all."""
        await (await self.enqueue(messages))

    async def enqueue(self, messages: Iterable[Message]) -> asyncio.Future[list[object]]:
        """Queue messages in their order; returns when they are queued, with a future of the
        broker's acknowledgement of them all. Messages queued later follow them on every
        partition, so the next batch can be queued before this one is acknowledged.

        They are packed into record batches per partition, partitioned by key as aiokafka's
        `send` would: one future per batch instead of one per message (the relay's hot path).
        Order per partition is kept: a full batch is queued before the next one is started.
        """
        open_batches: dict[tuple[str, int], BatchBuilder] = {}
        acks: list[asyncio.Future[object]] = []
        partitions: dict[str, list[int]] = {}
        for topic, key, value, headers in messages:
            if topic not in partitions:
                partitions[topic] = sorted(await self._kafka.partitions_for(topic))
            partition = partition_for(key, partitions[topic], partitions[topic])
            record = {"timestamp": None, "key": key, "value": value, "headers": list(headers)}
            batch = open_batches.get((topic, partition))
            if batch is None or batch.append(**record) is None:
                if batch is not None:  # full: queue it, then start the next one
                    acks.append(await self._kafka.send_batch(batch, topic, partition=partition))
                batch = open_batches[topic, partition] = self._kafka.create_batch()
                if batch.append(**record) is None:
                    raise ValueError(f"a message of {len(value)} bytes does not fit a batch")
        for (topic, partition), batch in open_batches.items():
            acks.append(await self._kafka.send_batch(batch, topic, partition=partition))
        return asyncio.gather(*acks)

    async def connected(self) -> bool:
        """True when the broker answers a metadata request."""
        client = self._kafka.client
        try:
            node = client.get_random_node()
            return node is not None and await client.ready(node)
        except Exception:
            return False
