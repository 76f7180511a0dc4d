"""The one Kafka producer a service process owns (acks=all; idempotence is a setting)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

Headers = Sequence[tuple[str, bytes]]


class Producer:
    """Thin wrapper so every service produces with the same durability settings."""

    def __init__(self, bootstrap_servers: str, *, idempotence: bool, client_id: str) -> None:
        self._kafka = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=idempotence,
            linger_ms=2,
            request_timeout_ms=15000,
        )

    async def start(self) -> None:
        await self._kafka.start()

    async def stop(self) -> None:
        await self._kafka.stop()

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, headers: Headers = ()
    ) -> asyncio.Future[object]:
        """Queue one message; returns a future resolved once the broker acknowledged it."""
        return await self._kafka.send(topic, value, key=key, headers=list(headers))

    async def connected(self) -> bool:
        """True when the broker answers a metadata request."""
        client = self._kafka.client
        try:
            node = client.get_random_node()
            return node is not None and await client.ready(node)
        except Exception:
            return False
