"""Alembic wiring: one migration chain per service, version table inside its schema."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import check_schema_name, create_engine, ensure_schema, migration_lock
from shared.ratelimit import rate_limit_metadata
from shared.tables import CLAIM_TIMERS_FUNCTION, create_platform_objects, platform_metadata


def create_platform_tables() -> None:
    """Create outbox, inbox and timers (call from a service's first revision)."""
    create_platform_objects(op.get_bind())


def index_pending_timers_in_claim_order() -> None:
    """Pending timers indexed on (due_at, id), the order the timer worker claims them in
    (schemas created before it had due_at alone); the index of a new schema already is."""
    op.execute("DROP INDEX IF EXISTS timers_pending")
    op.execute("CREATE INDEX timers_pending ON timers (due_at, id) WHERE fired_at IS NULL")


def index_pending_timers_by_due_time() -> None:
    """Reverse of index_pending_timers_in_claim_order."""
    op.execute("DROP INDEX IF EXISTS timers_pending")
    op.execute("CREATE INDEX timers_pending ON timers (due_at) WHERE fired_at IS NULL")


def index_fired_timers() -> None:
    """Fired timers indexed by when they fired, for the purge after the retention (a new
    schema's first revision already creates it)."""
    op.execute(
        "CREATE INDEX IF NOT EXISTS timers_fired_at ON timers (fired_at) WHERE fired_at IS NOT NULL"
    )


def drop_fired_timers_index() -> None:
    """Reverse of index_fired_timers."""
    op.execute("DROP INDEX IF EXISTS timers_fired_at")


def create_timer_claim() -> None:
    """The timer workers' claim as a function (shared.tables.CLAIM_TIMERS_FUNCTION), for
    schemas created before it; a new schema's first revision already creates it. Replaced
    in place: a later revision that changes it calls this again."""
    op.execute(CLAIM_TIMERS_FUNCTION)


def drop_timer_claim() -> None:
    """Reverse of create_timer_claim (the workers of older releases claim with statements)."""
    op.execute("DROP FUNCTION IF EXISTS claim_timers(text[], timestamptz, integer)")


def create_rate_limit_table() -> None:
    """Create the rate-limit counters (for services that limit per customer)."""
    rate_limit_metadata.create_all(op.get_bind())


def drop_platform_tables() -> None:
    """Reverse of create_platform_tables (a service's first revision's downgrade)."""
    platform_metadata.drop_all(op.get_bind())
    op.execute("DROP FUNCTION IF EXISTS outbox_notify()")
    drop_timer_claim()


def alembic_config(migrations_dir: Path, database_url: str, schema: str) -> Config:
    """A programmatic Alembic config for one service's chain (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["database_url"] = database_url
    cfg.attributes["schema"] = check_schema_name(schema)
    return cfg


def run_env(target_metadata: MetaData | None = None) -> None:
    """Body of every service's migrations/env.py: migrate inside the service's schema."""
    cfg = context.config
    database_url: str = cfg.attributes["database_url"]
    schema: str = cfg.attributes["schema"]

    def migrate(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=False,
        )
        with context.begin_transaction():
            # Replicas starting together migrate one at a time.
            connection.execute(*migration_lock(schema))
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(
            database_url,
            poolclass=pool.NullPool,
            connect_args={"server_settings": {"search_path": schema}},
        )
        async with engine.connect() as conn:
            await conn.run_sync(migrate)
            await conn.commit()
        await engine.dispose()

    asyncio.run(run())


async def upgrade(migrations_dir: Path, database_url: str, schema: str) -> None:
    """Create the schema if needed and bring it to the newest revision."""
    engine = create_engine(database_url, schema, application_name="steward-migrate")
    try:
        await ensure_schema(engine, schema)
    finally:
        await engine.dispose()
    cfg = alembic_config(migrations_dir, database_url, schema)
    # Alembic's env.py runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(command.upgrade, cfg, "head")
