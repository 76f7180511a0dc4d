"""Where tests find Postgres and a broker: env vars, testcontainers, or embedded (default)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from shared.devstack.broker import EmbeddedBroker, free_port
from shared.devstack.postgres import EmbeddedPostgres
from shared.devstack.topics import create_topics


@dataclass(frozen=True)
class Infrastructure:
    """Addresses of the Postgres server and Kafka-protocol broker the tests use."""

    database_url: str
    bootstrap_servers: str
    database_source: str
    broker_source: str


def _docker_works() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


@contextmanager
def test_infrastructure() -> Iterator[Infrastructure]:
    """Started once per test session; torn down at its end."""
    with ExitStack() as stack:
        use_containers = os.environ.get("STEWARD_TESTCONTAINERS") == "1" and _docker_works()
        workdir = Path(tempfile.mkdtemp(prefix="steward-test-"))
        stack.callback(shutil.rmtree, workdir, True)

        database_url = os.environ.get("DATABASE_URL")
        database_source = "DATABASE_URL"
        if not database_url and use_containers:
            from testcontainers.postgres import PostgresContainer

            pg = stack.enter_context(PostgresContainer("postgres:16-alpine", driver="asyncpg"))
            database_url, database_source = pg.get_connection_url(), "testcontainers"
        if not database_url:
            embedded_pg = EmbeddedPostgres(workdir / "postgres", free_port())
            stack.callback(embedded_pg.stop, "immediate")
            database_url, database_source = embedded_pg.start(), "embedded"

        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        broker_source = "KAFKA_BOOTSTRAP_SERVERS"
        if not bootstrap and use_containers:
            from testcontainers.kafka import KafkaContainer

            kafka = stack.enter_context(KafkaContainer().with_kraft())
            bootstrap, broker_source = kafka.get_bootstrap_server(), "testcontainers"
        if not bootstrap:
            broker = EmbeddedBroker(free_port(), workdir / "broker.log")
            stack.callback(broker.stop)
            bootstrap, broker_source = broker.start(), "embedded"

        asyncio.run(create_topics(bootstrap))
        yield Infrastructure(database_url, bootstrap, database_source, broker_source)


@asynccontextmanager
async def empty_broker(infra: Infrastructure) -> AsyncIterator[Infrastructure]:
    """The same infrastructure with a new, empty embedded broker (topics created).

    The embedded broker keeps every batch in memory and its fetches slow down as a partition
    holds more of them; a measurement that must not inherit an earlier one's records runs on
    its own. An external broker (KAFKA_BOOTSTRAP_SERVERS, testcontainers) is used as it is.
    """
    if infra.broker_source != "embedded":
        yield infra
        return
    workdir = Path(tempfile.mkdtemp(prefix="steward-broker-"))
    broker = EmbeddedBroker(free_port(), workdir / "broker.log")
    try:
        bootstrap = await asyncio.to_thread(broker.start)
        await create_topics(bootstrap)
        yield replace(infra, bootstrap_servers=bootstrap)
    finally:
        await asyncio.to_thread(broker.stop)
        shutil.rmtree(workdir, ignore_errors=True)
