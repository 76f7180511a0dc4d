"""Per-key rate limits counted in Postgres, so every replica enforces the same limit.

A fixed window per key: the first use in a window inserts the counter, later uses
increment it under the row lock. The count rolls back with a failed transaction, so
only work that happened is counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)

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


# Counts one use of (:bucket, :window_start) and returns the count. A service may embed
# it as a CTE in a larger statement (one round trip) and pass the count to `check`.
USE_SQL = (
    "INSERT INTO rate_limits (bucket, window_start, count) VALUES (:bucket, :window_start, 1) "
    "ON CONFLICT ON CONSTRAINT rate_limits_pkey DO UPDATE SET count = rate_limits.count + 1 "
    "RETURNING count"
)


def check(bucket: str, rule: RateLimit, now: datetime, count: int) -> int:
    """Raise RateLimited if `count` uses (counted by USE_SQL) exceed the limit; else `count`."""
    if count > rule.limit:
        start = window_start(now, rule.window)
        retry_after = math.ceil((start + rule.window - now).total_seconds())
        raise RateLimited(bucket, rule, max(retry_after, 1))
    return count
