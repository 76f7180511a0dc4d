"""Set-based SQL: one prepared `INSERT … SELECT FROM unnest(arrays)` per table and shape,
and `column = ANY(array)` filters.

A multi-row VALUES statement — like an `IN (…)` list — is compiled and prepared anew for
every batch size; an array parameter keeps one statement text, so Postgres prepares it once
and a batch of any size is a single round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Table, TextClause, any_, literal, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

_DIALECT = postgresql.dialect()


def _array_type(table: Table, column: str) -> str:
    return f"{table.c[column].type.compile(dialect=_DIALECT)}[]"


def json_text(value: Any) -> str:
    """JSON text of a value for a json/jsonb column or array parameter (orjson: several
    times faster than the json module on the per-row paths)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def any_of(column: ColumnElement[Any], values: Iterable[Any]) -> ColumnElement[bool]:
    """`column = ANY(:array)`: an `IN` filter whose statement text does not depend on the
    number of values (one cached prepared statement for batches of every size)."""
    return column == any_(literal(list(values), postgresql.ARRAY(column.type)))


@cache
def _statement(
    table: Table,
    columns: tuple[str, ...],
    conflict: tuple[str, ...] | None,
    update: tuple[tuple[str, str], ...] | None,
    update_where: str | None,
    returning: tuple[str, ...],
) -> TextClause:
    arrays = ", ".join(f"CAST(:{c} AS {_array_type(table, c)})" for c in columns)
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"
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
    return text(sql)


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
) -> list[Any]:
    """Insert `rows` (all with the same keys) in one statement; upsert when `conflict` is given.

    `update` lists columns set from the proposed row on conflict (`col = excluded.col`);
    `update_sql` gives other assignments as SQL (e.g. a CASE keeping an old value);
    `update_where` (SQL) limits the update to the conflicting rows it holds for.
    Without `update`/`update_sql`, conflicting rows are skipped. Returns RETURNING rows.
    """
    if not rows:
        return []
    columns = tuple(rows[0])
    assignments = tuple((c, f"excluded.{c}") for c in update) + tuple((update_sql or {}).items())
    stmt = _statement(
        table,
        columns,
        tuple(conflict) if conflict is not None else None,
        assignments or None,
        update_where,
        tuple(returning),
    )
    params = {c: [row[c] for row in rows] for c in columns}
    result = await session.execute(stmt, params)
    return list(result.all()) if returning else []
