"""Set-based SQL: one prepared `INSERT … SELECT FROM json_to_recordset(rows)` per table and
shape, `column = ANY(array)` filters, and binary COPY for plain appends.

A multi-row VALUES statement — like an `IN (…)` list — is compiled and prepared anew for
every batch size; a single parameter keeps one statement text, so Postgres prepares it once
and a batch of any size is a single round trip. The rows travel as one JSON text (orjson)
rather than one array parameter per column: asyncpg encodes numeric and timestamp arrays
value by value in Python. Upserting 1,000 accounts (8 columns, two of them numeric) took
0.6-0.75 ms of client CPU and 6.4-10.1 ms in all, against 3.6-4.2 ms and 10.3-12.0 ms as
unnest arrays (two alternating rounds of 40 batches each).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

import orjson
from sqlalchemy import JSON, ColumnElement, Table, TextClause, any_, literal, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

_DIALECT = postgresql.dialect()


def _sql_type(table: Table, column: str) -> str:
    return str(table.c[column].type.compile(dialect=_DIALECT))


def json_text(value: Any) -> str:
    """JSON text of a value for a json/jsonb column or array parameter (orjson: several
    times faster than the json module on the per-row paths)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def any_of(column: ColumnElement[Any], values: Iterable[Any]) -> ColumnElement[bool]:
    """`column = ANY(:array)`: an `IN` filter whose statement text does not depend on the
    number of values (one cached prepared statement for batches of every size)."""
    return column == any_(literal(list(values), postgresql.ARRAY(column.type)))


def _recordset(table: Table, columns: tuple[str, ...], param: str = "rows") -> str:
    """The `:rows` parameter (see `_rows_json`) as a relation `r` of typed columns."""
    fields = ", ".join(f'"{c}" {_sql_type(table, c)}' for c in columns)
    return f"json_to_recordset(CAST(:{param} AS JSON)) AS r({fields})"


@cache
def _text(sql: str) -> TextClause:
    """One statement object per text (`text()` parses the bind parameters as it is built)."""
    return text(sql)


@cache
def _insert_sql(
    table: Table,
    columns: tuple[str, ...],
    conflict: tuple[str, ...] | None,
    update: tuple[tuple[str, str], ...] | None,
    update_where: str | None,
    returning: tuple[str, ...],
    param: str = "rows",
    computed: tuple[tuple[str, str], ...] = (),
) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    targets = "".join(f', "{c}"' for c, _ in computed)
    values = "".join(f", {expr}" for _, expr in computed)
    recordset = _recordset(table, columns, param)
    sql = f"INSERT INTO {table.name} ({names}{targets}) SELECT {names}{values} FROM {recordset}"
    if conflict is not None:
        target = f"({', '.join(conflict)})"
        if update:
            sets = ", ".join(f"{c} = {expr}" for c, expr in update)
            sql += f" ON CONFLICT {target} DO UPDATE SET {sets}"
            if update_where:
                sql += f" WHERE {update_where}"
        else:
            sql += f" ON CONFLICT {target} DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(returning)}"
    return sql


@cache
def _json_columns(table: Table, columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(c for c in columns if isinstance(table.c[c].type, JSON))


def _json_default(value: Any) -> Any:
    """What orjson cannot write itself: exact decimals as strings, bytes as bytea hex.
    Anything else is refused (orjson's TypeError names the type)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError


def _rows_json(table: Table, columns: tuple[str, ...], rows: Sequence[Mapping[str, Any]]) -> str:
    """`rows` as the JSON array `json_to_recordset` reads. A json/jsonb column's value given as
    JSON text (as asyncpg takes it) is embedded as the document it holds, not as a string."""
    embedded = _json_columns(table, columns)
    if embedded:
        rows = [
            {**row, **{c: orjson.Fragment(row[c]) for c in embedded if isinstance(row[c], str)}}
            for row in rows
        ]
    return orjson.dumps(rows, default=_json_default).decode()


async def bulk_insert(
    session: AsyncSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str] | None = None,
    update: Sequence[str] = (),
    update_sql: Mapping[str, str] | None = None,
    update_where: str | None = None,
    returning: Sequence[str] = (),
    computed: Mapping[str, str] | None = None,
) -> list[Any]:
    """Insert `rows` (all with the same keys) in one statement; upsert when `conflict` is given.

    `update` lists columns set from the proposed row on conflict (`col = excluded.col`);
    `update_sql` gives other assignments as SQL (e.g. a CASE keeping an old value);
    `update_where` (SQL) limits the update to the conflicting rows it holds for.
    Without `update`/`update_sql`, conflicting rows are skipped. Returns RETURNING rows.
    `computed` gives further columns as SQL over the proposed row `r` (e.g. a lookup in
    another table), computed in the same statement.
    """
    if not rows:
        return []
    columns = tuple(rows[0])
    stmt = _text(
        _insert_sql(
            table,
            columns,
            tuple(conflict) if conflict is not None else None,
            _assignments(update, update_sql),
            update_where,
            tuple(returning),
            computed=tuple((computed or {}).items()),
        )
    )
    result = await session.execute(stmt, {"rows": _rows_json(table, columns, rows)})
    return list(result.all()) if returning else []


def _assignments(
    update: Sequence[str], update_sql: Mapping[str, str] | None
) -> tuple[tuple[str, str], ...] | None:
    pairs = tuple((c, f"excluded.{c}") for c in update) + tuple((update_sql or {}).items())
    return pairs or None


@dataclass(frozen=True)
class Upsert:
    """One table's share of `bulk_writes`: `bulk_insert`'s arguments, without RETURNING."""

    table: Table
    rows: Sequence[Mapping[str, Any]]
    conflict: tuple[str, ...] | None = None
    update: tuple[str, ...] = ()
    update_sql: Mapping[str, str] | None = None

    def shape(self) -> tuple[Any, ...]:
        """What the statement text depends on (not the rows' values)."""
        return (
            "insert",
            self.table,
            tuple(self.rows[0]),
            self.conflict,
            _assignments(self.update, self.update_sql),
        )


@dataclass(frozen=True)
class Update:
    """One table's share of `bulk_writes`: `bulk_update`'s arguments."""

    table: Table
    key: str
    rows: Sequence[Mapping[str, Any]]

    def shape(self) -> tuple[Any, ...]:
        return ("update", self.table, self.key, tuple(c for c in self.rows[0] if c != self.key))


@dataclass(frozen=True)
class Delete:
    """One table's share of `bulk_writes`: delete the rows whose `key` is one of `rows`'
    (each row a mapping holding only the key)."""

    table: Table
    key: str
    rows: Sequence[Mapping[str, Any]]

    def shape(self) -> tuple[Any, ...]:
        return ("delete", self.table, self.key)


Write = Upsert | Update | Delete


async def bulk_writes(session: AsyncSession, writes: Sequence[Write]) -> None:
    """Several `bulk_insert`s, `bulk_update`s and `Delete`s in one statement, one round
    trip: each write but the last runs as a data-modifying WITH query. Postgres runs every
    one to completion, all against the same snapshot: a write cannot see another's rows, so
    no two writes may touch the same row and none may depend on what another writes (foreign
    keys are checked at the statement's end, so a row may refer to one that existed before).
    Writes without rows are left out."""
    present = [w for w in writes if w.rows]
    if not present:
        return
    shapes = tuple(w.shape() for w in present)
    await session.execute(
        _writes_statement(shapes),
        {
            f"rows{n}": _rows_json(w.table, _columns(shape), w.rows)
            for n, (w, shape) in enumerate(zip(present, shapes, strict=True))
        },
    )


def _columns(shape: tuple[Any, ...]) -> tuple[str, ...]:
    """The columns a write's rows carry, in the order its statement reads them."""
    if shape[0] == "update":
        _, _, key, columns = shape
        return (key, *columns)
    if shape[0] == "delete":
        return (shape[2],)
    return tuple(shape[2])


@cache
def _writes_statement(shapes: tuple[tuple[Any, ...], ...]) -> TextClause:
    parts = []
    for n, shape in enumerate(shapes):
        if shape[0] == "update":
            _, table, key, columns = shape
            parts.append(_update_sql(table, key, columns, param=f"rows{n}"))
        elif shape[0] == "delete":
            _, table, key = shape
            parts.append(
                f"DELETE FROM {table.name} AS t USING {_recordset(table, (key,), f'rows{n}')} "
                f'WHERE t."{key}" = r."{key}"'
            )
        else:
            _, table, columns, conflict, assignments = shape
            parts.append(
                _insert_sql(table, columns, conflict, assignments, None, (), param=f"rows{n}")
            )
    *first, last = parts
    if not first:
        return text(last)
    ctes = ", ".join(f"w{n} AS ({sql})" for n, sql in enumerate(first))
    return text(f"WITH {ctes} {last}")


@cache
def _update_sql(table: Table, key: str, columns: tuple[str, ...], param: str = "rows") -> str:
    sets = ", ".join(f'"{c}" = r."{c}"' for c in columns)
    return (
        f"UPDATE {table.name} AS t SET {sets} FROM {_recordset(table, (key, *columns), param)} "
        f'WHERE t."{key}" = r."{key}"'
    )


async def bulk_update(
    session: AsyncSession, table: Table, key: str, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Set each row's columns to its own values, found by `key`, in one statement. Every row
    has the same keys; a key value appears at most once."""
    if not rows:
        return
    columns = tuple(c for c in rows[0] if c != key)
    await session.execute(
        _text(_update_sql(table, key, columns)),
        {"rows": _rows_json(table, (key, *columns), rows)},
    )


# Appended rows up to this many join a `bulk_writes` statement (as json_to_recordset
# inserts) instead of a COPY of their own, which takes two round trips (the command, then
# the data). Postgres 15 here, a transaction appending one row and emitting n events, 20
# alternating rounds of 50: n = 2, 1.79 ms a transaction against 2.04 with COPY (17 of 20
# rounds faster); n = 8, 1.90 against 2.01; n = 16, 2.34 against 2.39 (even); n = 32, 3.41
# against 3.23; n = 60, 4.65 against 3.56 (the bytes travel as hex in JSON).
APPEND_INLINE_ROWS = 16


async def bulk_copy(session: AsyncSession, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append `rows` (all with the same keys) with binary COPY, in the session's transaction.

    For inserts that need no conflict handling and no RETURNING (outbox rows, history,
    attempts). asyncpg encodes COPY records with far less work than array parameters:
    1,500 outbox rows took 1.3 ms of client CPU and 10 ms in all, against 4.4 ms and 18 ms
    as unnest arrays (bulk_insert's form then; COPY is not measured against its JSON form,
    in which bytea values would travel as hex). COPY fires the table's INSERT triggers,
    statement-level ones included.
    json/jsonb values are passed as JSON text, as to `bulk_insert`.
    """
    if not rows:
        return
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if driver is None or not driver.is_in_transaction():
        # SQLAlchemy begins its transaction with the first statement it runs: let it.
        await bulk_insert(session, table, rows)
        return
    columns = tuple(rows[0])
    await driver.copy_records_to_table(
        table.name, columns=columns, records=[tuple(row[c] for c in columns) for row in rows]
    )
