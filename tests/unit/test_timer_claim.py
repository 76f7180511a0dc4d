"""A claim hands its timers over in due order whatever order the claim function's rows come
in: the function's ORDER BY orders its CTE, not its result."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from shared.timers import claim

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


class _Rows:
    """A session whose one statement answers with the given rows."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    async def execute(self, statement: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return self.rows


async def test_a_claim_orders_its_timers_by_due_time_then_id_and_keeps_the_look():
    def row(id_: int, seconds_ago: int) -> tuple[Any, ...]:
        return (id_, "probe", f"k{id_}", NOW - timedelta(seconds=seconds_ago), {}, None)

    look_row = (None, None, None, None, None, NOW + timedelta(hours=1))
    session = _Rows([row(3, 1), row(2, 5), look_row, row(1, 1), row(4, 9)])

    look = await claim(cast(AsyncSession, session), ["probe"], NOW, 5)

    assert [t.id for t in look.due] == [4, 2, 1, 3]
    assert look.next_due == NOW + timedelta(hours=1)
