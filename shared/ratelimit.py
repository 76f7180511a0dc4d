"""Per-key rate limits counted in Postgres, so every replica enforces the same limit.

A fixed window per key: the first use in a window inserts the counter, later uses
increment it under the row lock. The count rolls back with a failed transaction, so
only work that happened is counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, DateTime, Integer, MetaData, PrimaryKeyConstraint, Table, Text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

rate_limit_metadata = MetaData()
rate_limits = Table(
    "rate_limits",
    rate_limit_metadata,
    Column("bucket", Text, nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("bucket", "window_start", name="rate_limits_pkey"),
)


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` uses per `window`."""

    limit: int
    window: timedelta


class RateLimited(Exception):
    """Too many uses in the current window; `retry_after` seconds until the next one."""

    def __init__(self, bucket: str, rule: RateLimit, retry_after: int) -> None:
        super().__init__(
            f"limit of {rule.limit} per {int(rule.window.total_seconds())}s reached; "
            f"retry in {retry_after}s"
        )
        self.bucket = bucket
        self.retry_after = retry_after


def window_start(now: datetime, window: timedelta) -> datetime:
    """Start of the fixed window holding `now` (windows are aligned to the epoch)."""
    seconds = window.total_seconds()
    epoch = now.timestamp()
    return datetime.fromtimestamp(math.floor(epoch / seconds) * seconds, UTC)


async def use(session: AsyncSession, bucket: str, rule: RateLimit, now: datetime) -> int:
    """Count one use of `bucket`; raise RateLimited past the limit. Returns the count."""
    start = window_start(now, rule.window)
    stmt = pg_insert(rate_limits).values(bucket=bucket, window_start=start, count=1)
    count = await session.scalar(
        stmt.on_conflict_do_update(
            constraint="rate_limits_pkey", set_={"count": rate_limits.c.count + 1}
        ).returning(rate_limits.c.count)
    )
    if int(count or 0) > rule.limit:
        retry_after = math.ceil((start + rule.window - now).total_seconds())
        raise RateLimited(bucket, rule, max(retry_after, 1))
    return int(count or 0)
