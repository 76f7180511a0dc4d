"""Migrations: replicas that start together on a new database all come up; schemas get
the indexes their hot queries need, whichever revision they were created at."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.complaints import store
from services.complaints.app import SPEC as COMPLAINTS
from services.complaints.domain import Complaint
from services.notifications.app import SPEC as NOTIFICATIONS
from services.profile.app import SPEC as PROFILE
from services.tiering.app import SPEC as TIERING
from shared.bulk import bulk_writes
from shared.db import asyncpg_dsn, create_engine, ensure_schema
from shared.migrations import alembic_config, upgrade
from shared.tables import CLAIM_TIMERS_QUERY
from shared.testing.infra import Infrastructure
from shared.timers import DueTimer
from tests.unit.complaints.test_complaint import T0, H, new

pytestmark = pytest.mark.integration


async def test_replicas_creating_a_new_schema_at_once_all_succeed(infra):
    """Each replica's start-up first ensures its schema exists; found by two tiering
    processes starting together in the benchmark (the second failed on pg_namespace).
    The window is one round trip wide, so several rounds of several replicas."""
    for _ in range(5):
        schema = infra.new_schema("tiering_m")
        engines = [
            create_engine(infra.database_url, schema, application_name=f"test-replica-{n}")
            for n in range(6)
        ]
        try:
            await asyncio.gather(*(ensure_schema(engine, schema) for engine in engines))
            async with engines[0].connect() as conn:
                found = await conn.scalar(
                    text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema}
                )
        finally:
            await asyncio.gather(*(engine.dispose() for engine in engines))
        assert found == 1


@asynccontextmanager
async def _complaints_schema(
    infra: Infrastructure,
) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A new schema migrated by the complaints service, and a connection working in it."""
    schema = infra.new_schema("complaints_m")
    await upgrade(COMPLAINTS.migrations, infra.database_url, schema)
    conn = await asyncpg.connect(
        asyncpg_dsn(infra.database_url), server_settings={"search_path": schema}
    )
    try:
        yield schema, conn
    finally:
        await conn.close()


async def _claim_plan(
    conn: asyncpg.Connection, database_url: str, schema: str, due: int
) -> dict[str, object]:
    """EXPLAIN ANALYZE of the timer worker's claim with `due` timers due at the same moment."""
    now = await conn.fetchval("SELECT now()")
    await conn.execute("TRUNCATE timers")
    await conn.execute(
        "INSERT INTO timers (kind, key, due_at) SELECT 'k', 'key-' || n, $1 "
        "FROM generate_series(1, $2) n",
        now,
        due,
    )
    await conn.execute("ANALYZE timers")
    return await _explain_claim(database_url, schema, now)


async def _explain_claim(
    database_url: str, schema: str, now: datetime, kinds: tuple[str, ...] = ("k",)
) -> dict[str, object]:
    """EXPLAIN ANALYZE of a claim of 500 timers of these kinds due by `now`: the statement
    of `claim_timers`, with its planner setting."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url), server_settings={"search_path": schema})
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_bitmapscan = off")  # as the function's SET
            explain = f"EXPLAIN (ANALYZE, FORMAT JSON) {CLAIM_TIMERS_QUERY}"
            raw = await conn.fetchval(explain, list(kinds), now, 500)
    finally:
        await conn.close()
    return dict(json.loads(raw)[0]["Plan"])


async def test_the_claim_function_plans_without_bitmap_scans_and_returns_its_look(infra):
    """The function every schema gets (a new one with its platform tables, an older one
    by its migration) is the statement the plan tests explain, with the setting."""
    found = (
        "SELECT pg_get_function_result(p.oid) AS result, p.proconfig, p.prosrc"
        " FROM pg_proc AS p WHERE p.proname = 'claim_timers'"
        " AND p.pronamespace = current_schema()::regnamespace"
    )
    async with _complaints_schema(infra) as (schema, conn):
        config = alembic_config(COMPLAINTS.migrations, infra.database_url, schema)
        await asyncio.to_thread(command.downgrade, config, "0007")
        assert await conn.fetchrow(found) is None  # as a schema of an older release
        await asyncio.to_thread(command.upgrade, config, "head")
        function = await conn.fetchrow(found)
    assert function["proconfig"] == ["enable_bitmapscan=off"]
    assert function["prosrc"].strip() == CLAIM_TIMERS_QUERY.strip()
    assert function["result"] == (
        "TABLE(id bigint, kind text, key text, due_at timestamp with time zone,"
        " payload jsonb, next_due timestamp with time zone)"
    )
    # shared.timers.claim builds each DueTimer from the first five columns by position
    assert [f.name for f in dataclasses.fields(DueTimer)] == [
        "id",
        "kind",
        "key",
        "due_at",
        "payload",
    ]


def _nodes(plan: dict[str, object]) -> list[str]:
    children = plan.get("Plans", [])
    assert isinstance(children, list)
    return [str(plan["Node Type"])] + [n for child in children for n in _nodes(child)]


def _sorts(plan: dict[str, object]) -> bool:
    """Whether the plan sorts (a Sort, or an Incremental Sort of rows due at the same time)."""
    return any(node.endswith("Sort") for node in _nodes(plan))


async def test_a_claim_among_many_timers_due_at_once_reads_only_its_batch(infra):
    """100,000 SLA timers falling due at once: with due_at alone indexed, every claim of
    500 sorted all of them (49 ms each, 200 claims). A schema migrated from before the
    (due_at, id) index gets it too; downgrading puts the old one back."""
    async with _complaints_schema(infra) as (schema, conn):
        config = alembic_config(COMPLAINTS.migrations, infra.database_url, schema)
        plan = await _claim_plan(conn, infra.database_url, schema, 20_000)
        assert not _sorts(plan) and "Index Scan" in _nodes(plan)
        assert plan["Actual Rows"] == 500

        await asyncio.to_thread(command.downgrade, config, "0002")
        # the plan the fix removes
        assert _sorts(await _claim_plan(conn, infra.database_url, schema, 20_000))
        await asyncio.to_thread(command.upgrade, config, "head")
        assert not _sorts(await _claim_plan(conn, infra.database_url, schema, 20_000))


async def test_timers_falling_due_at_once_are_claimed_in_index_order_on_stale_statistics(infra):
    """Statistics gathered while every pending timer lay in the future (scheduled at mixed
    offsets, so in no physical order) estimated a mass of timers falling due at once at a
    few rows: the claim read and sorted all of them to lock 500 (80 to 120 ms a claim with
    100,000 due), until its "due by now" bound reached the planner as a sub-select."""
    async with _complaints_schema(infra) as (schema, conn):
        now = await conn.fetchval("SELECT now()")
        await conn.execute(
            "INSERT INTO timers (kind, key, due_at) SELECT 'k', 'later-' || n,"
            " $1::timestamptz + interval '1 hour' + (n * 7919 % 5000) * interval '50 seconds'"
            " FROM generate_series(1, 5000) n",
            now,
        )
        await conn.execute("ANALYZE timers")
        await conn.execute(
            "INSERT INTO timers (kind, key, due_at) SELECT 'k', 'due-' || n,"
            " $1::timestamptz - interval '1 second' FROM generate_series(1, 20000) n",
            now,
        )
        plan = await _explain_claim(infra.database_url, schema, now)
    assert not _sorts(plan) and "Index Scan" in _nodes(plan), _nodes(plan)
    assert not any(node.startswith("Bitmap") for node in _nodes(plan))
    assert plan["Actual Rows"] == 500


async def test_timers_falling_due_at_once_are_claimed_in_index_order_before_any_analyze(infra):
    """A new schema's timers table, never analyzed, given 100,000 timers due at once (the
    benchmark's mass breach): the planner estimated them at one row, ANDed the bitmaps of
    the pending and (kind, key) indexes and sorted every due timer on disk to lock 500,
    35 to 155 ms a claim, until claims were planned without bitmap scans."""
    async with _complaints_schema(infra) as (schema, conn):
        now = await conn.fetchval("SELECT now()")
        await conn.execute(
            "INSERT INTO timers (kind, key, due_at) SELECT 'sla', 'due-' || n,"
            " $1::timestamptz - interval '1 second' FROM generate_series(1, 100000) n",
            now,
        )
        plan = await _explain_claim(infra.database_url, schema, now, kinds=("sla", "callback"))
    assert not _sorts(plan) and "Index Scan" in _nodes(plan), _nodes(plan)
    assert plan["Actual Rows"] == 500


async def test_complaints_whose_timers_fire_together_are_rewritten_in_place(infra):
    """Complaints filed together share pages; when their breach fires for all of them in
    one transaction, each row is rewritten on its own page (a heap-only update that
    touches no index), as the half-empty pages of migration 0004 leave room for."""
    schema = infra.new_schema("complaints_m")
    await upgrade(COMPLAINTS.migrations, infra.database_url, schema)
    engine = create_engine(infra.database_url, schema, application_name="test-hot-updates")
    template, _ = new()
    filed = [
        dataclasses.replace(template, complaint_id=f"CP{n}", complaint_ref=f"R{n}")
        for n in range(200)
    ]
    now = T0 + 200 * H
    try:
        async with AsyncSession(engine) as session, session.begin():
            await store.save(session, filed, T0)
        async with AsyncSession(engine) as session, session.begin():
            loaded = await store.load_for_update(session, (c.complaint_id for c in filed))
            for complaint in loaded.values():
                assert complaint.sla_due(now, "response", "breach_1", 0) is not None
            await bulk_writes(session, [store.fired_update(list(loaded.values()), now)])
            updated, in_place = (
                await session.execute(
                    text(
                        "SELECT pg_stat_get_xact_tuples_updated('complaints'::regclass),"
                        " pg_stat_get_xact_tuples_hot_updated('complaints'::regclass)"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    assert (updated, in_place) == (200, 200)


@pytest.mark.parametrize(
    ("spec", "before"),
    [(COMPLAINTS, "0004"), (NOTIFICATIONS, "0002"), (PROFILE, "0002"), (TIERING, "0003")],
    ids=lambda v: getattr(v, "name", v),
)
async def test_every_schema_indexes_fired_timers_for_the_purge(infra, spec, before):
    """The purge finds fired timers past the retention by `timers_fired_at`: a schema
    migrated from before it gets it, and a downgrade takes it away again."""
    schema = infra.new_schema(f"{spec.name}_m")
    await upgrade(spec.migrations, infra.database_url, schema)
    config = alembic_config(spec.migrations, infra.database_url, schema)
    conn = await asyncpg.connect(asyncpg_dsn(infra.database_url))

    async def indexed() -> bool:
        found = await conn.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = $2",
            schema,
            "timers_fired_at",
        )
        return bool(found)

    try:
        assert await indexed()
        await asyncio.to_thread(command.downgrade, config, before)
        assert not await indexed()
        await asyncio.to_thread(command.upgrade, config, "head")
        assert await indexed()
    finally:
        await conn.close()


async def test_complaint_documents_written_as_jsonb_read_back_the_same_as_json(infra):
    """Migration 0006 turns the document column from jsonb into json: complaints saved
    before it load unchanged after it (and after a downgrade and upgrade again)."""
    schema = infra.new_schema("complaints_m")
    await upgrade(COMPLAINTS.migrations, infra.database_url, schema)
    config = alembic_config(COMPLAINTS.migrations, infra.database_url, schema)
    engine = create_engine(infra.database_url, schema, application_name="test-document-json")
    template, _ = new()
    filed = [
        dataclasses.replace(template, complaint_id=f"CJ{n}", complaint_ref=f"RJ{n}")
        for n in range(3)
    ]

    async def column_type() -> str:
        async with AsyncSession(engine) as session:
            return str(
                await session.scalar(
                    text(
                        "SELECT data_type FROM information_schema.columns WHERE table_schema = "
                        ":schema AND table_name = 'complaints' AND column_name = 'document'"
                    ),
                    {"schema": schema},
                )
            )

    async def loaded() -> dict[str, Complaint]:
        async with AsyncSession(engine) as session:
            return await store.get_many(session, (c.complaint_id for c in filed))

    try:
        assert await column_type() == "json"
        await asyncio.to_thread(command.downgrade, config, "0005")
        assert await column_type() == "jsonb"
        async with AsyncSession(engine) as session, session.begin():
            await store.save(session, filed, T0)
        await asyncio.to_thread(command.upgrade, config, "head")
        assert await column_type() == "json"
        assert await loaded() == {c.complaint_id: c for c in filed}
        await asyncio.to_thread(command.downgrade, config, "0005")
        await asyncio.to_thread(command.upgrade, config, "head")
        assert await loaded() == {c.complaint_id: c for c in filed}
    finally:
        await engine.dispose()


async def test_per_level_sla_timers_become_one_timer_per_clock_at_its_earliest_level(infra):
    """Migration 0007: a clock's pending per-level timers become one, at the earliest
    pending level; fired ones and other kinds stay; a downgrade renames it back."""
    schema = infra.new_schema("complaints_m")
    engine = create_engine(infra.database_url, schema, application_name="test-sla-timers")
    try:
        await ensure_schema(engine, schema)
    finally:
        await engine.dispose()
    config = alembic_config(COMPLAINTS.migrations, infra.database_url, schema)
    await asyncio.to_thread(command.upgrade, config, "0006")
    conn = await asyncpg.connect(
        asyncpg_dsn(infra.database_url), server_settings={"search_path": schema}
    )

    def sla(key: str, hours: int, level: str, fired: bool = False) -> tuple[object, ...]:
        return ("complaints.sla", key, T0 + hours * H, json.dumps({"level": level}), fired)

    rows = [
        sla("A:response:warning:0", 19, "warning"),
        sla("A:response:breach_1:0", 24, "breach_1"),
        sla("A:response:breach_2:0", 36, "breach_2"),
        sla("A:resolution:breach_2:1", 108, "breach_2"),
        sla("B:response:warning:0", 19, "warning", fired=True),
        sla("B:response:breach_1:0", 24, "breach_1"),
        sla("B:response:breach_2:0", 36, "breach_2"),
        ("complaints.callback", "A:0:1", T0, "{}", False),
    ]
    try:
        await conn.executemany(
            "INSERT INTO timers (kind, key, due_at, payload, fired_at) "
            "VALUES ($1, $2, $3, $4::jsonb, CASE WHEN $5 THEN now() END)",
            rows,
        )

        async def timers() -> set[tuple[str, float, str, bool]]:
            found = await conn.fetch(
                "SELECT key, due_at, payload->>'level' AS level, fired_at IS NULL AS pending "
                "FROM timers"
            )
            return {(r["key"], (r["due_at"] - T0) / H, r["level"], r["pending"]) for r in found}

        await asyncio.to_thread(command.upgrade, config, "head")
        assert await timers() == {
            ("A:response:0", 19, "warning", True),
            ("A:resolution:1", 108, "breach_2", True),
            ("B:response:warning:0", 19, "warning", False),
            ("B:response:0", 24, "breach_1", True),
            ("A:0:1", 0, None, True),
        }
        await asyncio.to_thread(command.downgrade, config, "0006")
        assert await timers() == {
            ("A:response:warning:0", 19, "warning", True),
            ("A:resolution:breach_2:1", 108, "breach_2", True),
            ("B:response:warning:0", 19, "warning", False),
            ("B:response:breach_1:0", 24, "breach_1", True),
            ("A:0:1", 0, None, True),
        }
    finally:
        await conn.close()


async def test_app_complaints_of_the_old_desk_id_become_the_departments(infra):
    """Migration 0009: a complaint owned by `customer_service_desk` (an id no staff record
    had) is owned by the customer service department; an employee's is left alone."""
    schema = infra.new_schema("complaints_m")
    await upgrade(COMPLAINTS.migrations, infra.database_url, schema)
    config = alembic_config(COMPLAINTS.migrations, infra.database_url, schema)
    engine = create_engine(infra.database_url, schema, application_name="test-desk-owner")
    template, _ = new()
    desk = dataclasses.replace(
        template, complaint_id="CD1", complaint_ref="RD1", owner_id="customer_service_desk"
    )
    staff = dataclasses.replace(template, complaint_id="CD2", complaint_ref="RD2")

    async def owners() -> dict[str, tuple[str, str]]:
        async with AsyncSession(engine) as session:
            found = await store.get_many(session, ["CD1", "CD2"])
            return {cid: (c.owner_id, c.owner_kind) for cid, c in found.items()}

    try:
        await asyncio.to_thread(command.downgrade, config, "0008")
        async with AsyncSession(engine) as session, session.begin():
            await store.save(session, [desk, staff], T0)
        await asyncio.to_thread(command.upgrade, config, "head")
        assert await owners() == {
            "CD1": ("customer_service", "department"),
            "CD2": (staff.owner_id, "employee"),
        }
        async with AsyncSession(engine) as session:
            column = await session.scalar(
                text("SELECT owner_id FROM complaints WHERE complaint_id = 'CD1'")
            )
        assert column == "customer_service"  # the column the lists filter on, too
        await asyncio.to_thread(command.downgrade, config, "0008")
        assert await owners() == {
            "CD1": ("customer_service_desk", "employee"),
            "CD2": (staff.owner_id, "employee"),
        }
    finally:
        await engine.dispose()
