"""Where tests find Postgres and a broker: env vars, testcontainers, or embedded (default)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import asyncpg

from shared.db import asyncpg_dsn
from shared.devstack.broker import EmbeddedBroker, free_port
from shared.devstack.postgres import EmbeddedPostgres
from shared.devstack.topics import create_topics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Infrastructure:
    """Addresses of the Postgres server and Kafka-protocol broker the tests use."""

    database_url: str
    bootstrap_servers: str
    database_source: str
    broker_source: str
    schemas: list[str] = field(default_factory=list, compare=False, repr=False)

    def new_schema(self, prefix: str) -> str:
        """A schema name unique to this run, dropped when the infrastructure is torn down."""
        schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.schemas.append(schema)
        return schema


async def drop_schemas(database_url: str, schemas: list[str]) -> None:
    """Drop the run's schemas; one still locked (a process left running) is reported, kept."""
    try:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
    except (OSError, asyncpg.PostgresError) as e:
        log.warning("%d test schemas left behind: %s", len(schemas), e)
        return
    try:
        await conn.execute("SET lock_timeout = '5s'")
        for schema in schemas:
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            except asyncpg.PostgresError as e:
                log.warning("test schema %s left behind: %s", schema, e)
    finally:
        await conn.close()


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
        infra = Infrastructure(database_url, bootstrap, database_source, broker_source)
        if database_source != "embedded":  # the embedded server's files are deleted anyway
            stack.callback(lambda: asyncio.run(drop_schemas(database_url, infra.schemas)))
        yield infra


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
