"""Platform tables every service schema holds: outbox, inbox and durable timers."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

# No schema here: each service's engine sets search_path to its own schema.
platform_metadata = MetaData()

outbox = Table(
    "outbox",
    platform_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("topic", Text, nullable=False),
    Column("key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=False),
    Column("headers", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Index("outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),
    # Rows kept after publishing (OUTBOX_KEEP_SENT_HOURS), purged in sent order.
    Index("outbox_sent_at", "sent_at", postgresql_where=text("sent_at IS NOT NULL")),
)

inbox = Table(
    "inbox",
    platform_metadata,
    Column("consumer", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer", "event_id", name="inbox_pkey"),
    Index("inbox_processed_at", "processed_at"),
)

timers = Table(
    "timers",
    platform_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("payload", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("fired_at", DateTime(timezone=True), nullable=True),
    Column("attempts", BigInteger, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=True),
    UniqueConstraint("kind", "key", name="timers_kind_key"),
    # In claim order (due_at, id): with only due_at, a claim among many timers due at the
    # same moment sorted all of them (100,000 due at once: 49 ms per claim, 0.4 ms now).
    Index("timers_pending", "due_at", "id", postgresql_where=text("fired_at IS NULL")),
    # A timer is deleted as it fires; rows marked fired (by a worker of an older release,
    # during a rolling upgrade) are purged after the retention in fired order (the relay's
    # purge).
    Index("timers_fired_at", "fired_at", postgresql_where=text("fired_at IS NOT NULL")),
)

OUTBOX_NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END $$;
"""

OUTBOX_NOTIFY_TRIGGER = """
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
"""


# A timer worker's look, in one round trip: the due timers of the kinds ($1) due by $2,
# oldest first, at most $3, locked (those another worker holds are skipped); and, when it
# took fewer than $3, one more row holding only `next_due`: when the first pending timer of
# those kinds that it did not take falls due (NULL: none is pending). Timers are served by
# `timers_pending` in claim order, reading only the rows returned, for two reasons:
#
# - `claim_timers` plans without bitmap scans. On a table never analyzed since its timers
#   arrived (a new schema; a burst scheduled after a quiet spell) the planner estimated
#   100,000 due timers at one row, ANDed the bitmaps of `timers_pending` and the
#   (kind, key) index, and sorted every due timer on disk to lock 500: 35 to 155 ms a
#   claim, against 0.2 ms in index order. The look ahead did the same with every pending
#   timer (6 to 37 ms with 12,000 to 200,000 pending, against 0.03 ms). It takes the
#   first entry in order, not `min(due_at)`: estimating one matching row, Postgres 15
#   planned that aggregate over the whole index (20,000 entries read for the first).
# - `$2` reaches the planner as a sub-select, a value it cannot look up in the column's
#   statistics. Taken as a constant, it let statistics gathered while every pending timer
#   lay in the future (the usual state) estimate a mass of timers falling due at once at a
#   handful of rows, and the planner then read and sorted every due timer to lock the
#   first `$3`: 80 to 120 ms a claim with 100,000 due, against 0.3 ms in index order.
#
# Before, the worker sent the planner setting, the claim, the look ahead and a reset of the
# setting as four statements.
CLAIM_TIMERS_QUERY = """
WITH claimed AS MATERIALIZED (
    SELECT t.id, t.kind, t.key, t.due_at, t.payload FROM timers AS t
    WHERE t.fired_at IS NULL AND t.due_at <= (SELECT $2::timestamptz)
      AND t.kind = ANY ($1::text[])
    ORDER BY t.due_at, t.id
    LIMIT $3::integer
    FOR UPDATE SKIP LOCKED
)
SELECT c.id, c.kind, c.key, c.due_at, c.payload, NULL::timestamptz FROM claimed AS c
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, (
    SELECT t.due_at FROM timers AS t
    WHERE t.fired_at IS NULL AND t.kind = ANY ($1::text[])
      AND t.id <> ALL (ARRAY(SELECT c.id FROM claimed AS c))
    ORDER BY t.due_at, t.id
    LIMIT 1
)
WHERE (SELECT count(*) FROM claimed) < $3::integer
"""

# The SET clause holds for the function's statement only: the handlers after it, in the
# same transaction, plan freely.
CLAIM_TIMERS_FUNCTION = f"""
CREATE OR REPLACE FUNCTION claim_timers(text[], timestamptz, integer)
RETURNS TABLE (
    id bigint, kind text, key text, due_at timestamptz, payload jsonb, next_due timestamptz
)
LANGUAGE sql VOLATILE SET enable_bitmapscan = off
AS $$ {CLAIM_TIMERS_QUERY} $$;
"""


def create_platform_objects(connection: Connection) -> None:
    """Create outbox, inbox, timers, the outbox NOTIFY trigger and the timer claim in the
    current schema."""
    platform_metadata.create_all(connection)
    connection.execute(sql_text(OUTBOX_NOTIFY_FUNCTION))
    connection.execute(sql_text(OUTBOX_NOTIFY_TRIGGER))
    connection.execute(sql_text(CLAIM_TIMERS_FUNCTION))


def outbox_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel the outbox trigger signals for `schema`."""
    return f"outbox_{schema}"
