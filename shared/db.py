"""Postgres access: one async engine per service, bound to that service's schema."""

from __future__ import annotations

import re
from collections.abc import Iterable

import orjson
from sqlalchemy import TextClause, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from shared.bulk import json_text

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(schema: str) -> str:
    """Schema names are interpolated into DDL, so only plain identifiers are accepted."""
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    return schema


def create_engine(database_url: str, schema: str, *, application_name: str) -> AsyncEngine:
    """An engine whose connections resolve unqualified tables in `schema`.

    No pre-ping: it cost three round trips (BEGIN, ping, ROLLBACK) before every
    transaction. A connection that died with the server fails its first statement instead;
    SQLAlchemy then discards every pooled connection of that age, and the caller's
    transient-fault handling (consumer and timer retries, relay backoff, HTTP 503) tries again.
    """
    check_schema_name(schema)
    return _create_async_engine(
        database_url,
        pool_size=10,
        max_overflow=10,
        json_serializer=json_text,
        json_deserializer=orjson.loads,
        connect_args={
            "server_settings": {
                "search_path": schema,
                "application_name": application_name,
                "timezone": "UTC",
            }
        },
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded values after commit (handlers read them afterwards)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def migration_lock(schema: str) -> tuple[TextClause, dict[str, str]]:
    """The transaction-scoped advisory lock that lets one replica at a time migrate `schema`."""
    return text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": f"migrate.{schema}"}


_LOCK_KEYS = text(
    "SELECT pg_advisory_xact_lock(hashtext(:scope || ':' || key))"
    " FROM unnest(CAST(:keys AS text[])) AS key"
)


async def lock_keys(session: AsyncSession, scope: str, keys: Iterable[str]) -> None:
    """Transaction-scoped advisory locks on `keys` within `scope`, in one round trip and in
    sorted order (two transactions wanting some of the same keys never deadlock): they
    serialise the writers of what no row stands for yet, a profile not created or a
    customer's next complaint. A transaction's next statement sees what the holder it waited
    for committed."""
    await session.execute(_LOCK_KEYS, {"scope": scope, "keys": sorted(set(keys))})


async def ensure_schema(engine: AsyncEngine, schema: str) -> None:
    """Create the service's schema if it is not there yet.

    Looks first: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
    schema exists, which a per-service role (deploy/postgres/roles.sql) does not have.
    Under the migration lock of the schema, so replicas starting together on a new database
    do not both try to create it (the second failed on pg_namespace's unique index).
    """
    async with engine.begin() as conn:
        await conn.execute(*migration_lock(schema))
        exists = await conn.scalar(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": schema}
        )
        if not exists:
            await conn.execute(text(f'CREATE SCHEMA "{check_schema_name(schema)}"'))


def asyncpg_dsn(database_url: str) -> str:
    """The same URL in the form asyncpg.connect() takes (for LISTEN connections)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)
