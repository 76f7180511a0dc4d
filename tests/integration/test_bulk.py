"""`bulk_insert`, `bulk_update` and `bulk_writes` on a real Postgres: every kind of value
arrives exactly as it was sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    Text,
    event,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bulk import Delete, Update, Upsert, bulk_insert, bulk_update, bulk_writes
from shared.db import create_engine, session_factory
from shared.testing.infra import Infrastructure

pytestmark = pytest.mark.integration

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Text, primary_key=True),
    Column("amount", Numeric(18, 2), nullable=False),
    Column("count", BigInteger, nullable=True),
    Column("at", DateTime(timezone=True), nullable=True),
    Column("day", Date, nullable=True),
    Column("flag", Boolean, nullable=True),
    Column("key", LargeBinary, nullable=True),
    Column("doc", JSONB, nullable=True),
    Column("tags", ARRAY(Text), nullable=True),
)

notes = Table(
    "notes",
    metadata,
    Column("id", Text, primary_key=True),
    Column("body", Text, nullable=False),
    Column("edits", BigInteger, nullable=False),
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def session(infra: Infrastructure) -> AsyncIterator[AsyncSession]:
    schema = infra.new_schema("bulk")
    engine = create_engine(infra.database_url, schema, application_name="test-bulk")
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(metadata.create_all)
    try:
        async with session_factory(engine)() as session, session.begin():
            yield session
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()


def row(n: int, **values: object) -> dict[str, object]:
    return {
        "id": f"T{n}",
        "amount": Decimal("0.00"),
        "count": None,
        "at": None,
        "day": None,
        "flag": None,
        "key": None,
        "doc": None,
        "tags": None,
    } | values


async def test_every_value_type_arrives_as_sent(session: AsyncSession) -> None:
    sent = [
        row(
            1,
            amount=Decimal("9999999999999999.99"),  # beyond a float's 15-16 exact digits
            count=2**62,
            at=datetime(2026, 12, 5, 23, 59, 59, 123456, tzinfo=SHANGHAI),
            day=date(2026, 2, 28),
            flag=True,
            key=b"\x00\xffkey\\x",
            doc='{"note": "a \\"quoted\\" \\u00e9 text", "n": [1, 2.5, null]}',
            tags=["sms", "wechat", 'with "quotes", commas'],
        ),
        row(2, amount=Decimal("-0.01"), flag=False, tags=[], doc="[]", key=b""),
        row(3, amount=Decimal("12.30"), at=datetime(2026, 1, 1, tzinfo=UTC)),
    ]
    await bulk_insert(session, things, sent)

    got = {r.id: r for r in (await session.execute(select(things))).all()}
    first = got["T1"]
    assert first.amount == Decimal("9999999999999999.99")
    assert first.count == 2**62
    assert first.at == datetime(2026, 12, 5, 15, 59, 59, 123456, tzinfo=UTC)
    assert first.day == date(2026, 2, 28)
    assert first.flag is True
    assert first.key == b"\x00\xffkey\\x"
    assert first.doc == {"note": 'a "quoted" é text', "n": [1, 2.5, None]}
    assert first.tags == ["sms", "wechat", 'with "quotes", commas']
    second = got["T2"]
    assert (second.amount, second.flag, second.tags, second.doc, second.key) == (
        Decimal("-0.01"),
        False,
        [],
        [],
        b"",
    )
    third = got["T3"]
    assert (third.amount, third.at, third.count, third.doc, third.key) == (
        Decimal("12.30"),
        datetime(2026, 1, 1, tzinfo=UTC),
        None,
        None,
        None,
    )


async def test_upsert_updates_conflicting_rows_and_returns_what_it_wrote(
    session: AsyncSession,
) -> None:
    await bulk_insert(session, things, [row(1, amount=Decimal("1.00")), row(2)])

    returned = await bulk_insert(
        session,
        things,
        [row(1, amount=Decimal("2.50"), count=7), row(3, amount=Decimal("3.00"))],
        conflict=("id",),
        update=("amount",),
        returning=("id", "amount", "count"),
    )

    assert sorted((r.id, r.amount, r.count) for r in returned) == [
        ("T1", Decimal("2.50"), None),  # only `amount` is updated on conflict
        ("T3", Decimal("3.00"), None),
    ]
    rows = (await session.execute(select(things.c.id).order_by(things.c.id))).scalars().all()
    assert rows == ["T1", "T2", "T3"]


async def test_skipping_conflicts_returns_only_the_new_rows(session: AsyncSession) -> None:
    await bulk_insert(session, things, [row(1)])

    returned = await bulk_insert(
        session, things, [row(1), row(2)], conflict=("id",), returning=("id",)
    )

    assert [r.id for r in returned] == ["T2"]


async def test_computed_columns_are_sql_over_the_proposed_row(session: AsyncSession) -> None:
    await bulk_insert(session, notes, [{"id": "T1", "body": "looked up", "edits": 3}])

    await bulk_insert(
        session,
        things,
        [{"id": "T1", "amount": Decimal("1.00")}, {"id": "T2", "amount": Decimal("2.00")}],
        computed={
            "count": "coalesce((SELECT n.edits FROM notes AS n WHERE n.id = r.id), -1)",
            "flag": "r.amount > 1",
        },
    )

    got = (await session.execute(select(things.c.id, things.c.count, things.c.flag))).all()
    assert sorted(got) == [("T1", 3, False), ("T2", -1, True)]


async def test_rows_may_be_any_mapping(session: AsyncSession) -> None:
    # Without a json column among the keys, the rows reach the encoder as they are.
    await bulk_insert(session, things, [MappingProxyType({"id": "T1", "amount": Decimal("4.20")})])

    assert await session.scalar(select(things.c.amount)) == Decimal("4.20")


async def test_a_value_it_cannot_send_is_refused_by_its_type(session: AsyncSession) -> None:
    with pytest.raises(TypeError, match="not JSON serializable: set"):
        await bulk_insert(session, things, [row(1, tags={"sms"})])


async def test_bulk_update_sets_each_row_from_its_own_values(session: AsyncSession) -> None:
    await bulk_insert(session, things, [row(1), row(2), row(3, amount=Decimal("3.00"))])

    await bulk_update(
        session,
        things,
        "id",
        [
            {"id": "T1", "amount": Decimal("1.10"), "tags": ["sms"], "doc": '{"a": 1}'},
            {"id": "T2", "amount": Decimal("2.20"), "tags": [], "doc": None},
        ],
    )

    got = {r.id: (r.amount, r.tags, r.doc) for r in (await session.execute(select(things))).all()}
    assert got == {
        "T1": (Decimal("1.10"), ["sms"], {"a": 1}),
        "T2": (Decimal("2.20"), [], None),
        "T3": (Decimal("3.00"), None, None),  # not in the update: untouched
    }


async def test_upserts_of_several_tables_in_one_statement(session: AsyncSession) -> None:
    await bulk_insert(session, things, [row(1, amount=Decimal("1.00"), count=1)])
    await bulk_insert(session, notes, [{"id": "N1", "body": "old", "edits": 1}])
    statements: list[str] = []
    sync = (await session.connection()).sync_connection
    assert sync is not None
    event.listen(sync, "before_cursor_execute", lambda *a: statements.append(a[2]))

    await bulk_writes(
        session,
        [
            Upsert(
                things,
                [row(1, amount=Decimal("1.50"), count=9), row(2, amount=Decimal("2.00"))],
                conflict=("id",),
                update=("amount",),
            ),
            Upsert(notes, []),  # nothing to write: left out
            Upsert(
                notes,
                [{"id": "N1", "body": "new", "edits": 0}, {"id": "N2", "body": "b", "edits": 0}],
                conflict=("id",),
                update=("body",),
                update_sql={"edits": "notes.edits + 1"},
            ),
        ],
    )

    assert len(statements) == 1 and statements[0].startswith("WITH w0 AS (INSERT INTO things")
    got = {r.id: (r.amount, r.count) for r in (await session.execute(select(things))).all()}
    assert got == {"T1": (Decimal("1.50"), 1), "T2": (Decimal("2.00"), None)}
    body = {r.id: (r.body, r.edits) for r in (await session.execute(select(notes))).all()}
    assert body == {"N1": ("new", 2), "N2": ("b", 0)}


async def test_inserts_and_updates_of_one_table_in_one_statement(session: AsyncSession) -> None:
    await bulk_insert(session, notes, [{"id": "N1", "body": "old", "edits": 0}])

    await bulk_writes(
        session,
        [
            Update(notes, "id", [{"id": "N1", "body": "new", "edits": 1}]),
            Upsert(notes, [{"id": "N2", "body": "added", "edits": 0}]),
            Update(notes, "id", [{"id": "N0", "edits": 9}]),  # no such row: nothing to update
        ],
    )

    got = (await session.execute(select(notes).order_by(notes.c.id))).all()
    assert [tuple(r) for r in got] == [("N1", "new", 1), ("N2", "added", 0)]


async def test_deletes_among_the_writes_of_one_statement(session: AsyncSession) -> None:
    notes_ = [{"id": f"N{n}", "body": "b", "edits": 0} for n in range(1, 5)]
    await bulk_insert(session, notes, notes_)
    await bulk_insert(session, things, [row(1, amount=Decimal("1.00"))])

    await bulk_writes(
        session,
        [
            Delete(notes, "id", [{"id": "N1"}, {"id": "N3"}, {"id": "N9"}]),  # N9: no such row
            Update(notes, "id", [{"id": "N2", "edits": 5}]),
            Delete(things, "id", []),  # nothing to delete: left out
        ],
    )

    got = (await session.execute(select(notes.c.id, notes.c.edits).order_by(notes.c.id))).all()
    assert [tuple(r) for r in got] == [("N2", 5), ("N4", 0)]
    assert (await session.execute(select(things.c.id))).scalars().all() == ["T1"]


async def test_upserts_of_one_table_or_none(session: AsyncSession) -> None:
    await bulk_writes(session, [])
    await bulk_writes(session, [Upsert(notes, [])])
    await bulk_writes(session, [Upsert(notes, [{"id": "N1", "body": "a", "edits": 0}])])

    assert (await session.execute(select(notes.c.id))).scalars().all() == ["N1"]
