"""Create the topics declared in deploy/topics/topics.yaml (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

TOPICS_FILE = Path(__file__).resolve().parents[2] / "deploy" / "topics" / "topics.yaml"
_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class TopicDefinition:
    name: str
    partitions: int
    replication_factor: int
    retention_ms: int


def load_topics(path: Path = TOPICS_FILE) -> list[TopicDefinition]:
    """The topic declarations, defaults applied."""
    doc = yaml.safe_load(path.read_text())
    defaults = doc["defaults"]
    return [
        TopicDefinition(
            name=t["name"],
            partitions=int(t.get("partitions", defaults["partitions"])),
            replication_factor=int(t.get("replication_factor", defaults["replication_factor"])),
            retention_ms=int(t.get("retention_ms", defaults["retention_ms"])),
        )
        for t in doc["topics"]
    ]


async def create_topics(
    bootstrap_servers: str, topics: list[TopicDefinition] | None = None, *, max_replication: int = 1
) -> list[str]:
    """Create missing topics; returns the names created now."""
    topics = topics if topics is not None else load_topics()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(
                    t.name,
                    t.partitions,
                    min(t.replication_factor, max_replication),
                    topic_configs={"retention.ms": str(t.retention_ms)},
                )
                for t in topics
            ]
        )
    finally:
        await admin.close()
    created = []
    for name, code, message in response.topic_errors:
        if code == 0:
            created.append(name)
        elif code != _ALREADY_EXISTS:
            raise RuntimeError(f"cannot create topic {name}: {message} (error {code})")
    return created
