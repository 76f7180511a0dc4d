"""Per-key rate limits counted in Postgres, so every replica enforces the same limit.

A fixed window per key: the first use in a window inserts the counter, later uses
increment it under the row lock. A batch of requests claims its uses in one statement,
and gives back those of the requests it refused; the count rolls back with a failed
transaction, so only work that happened is counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
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


# Claims uses of many buckets in one statement, in bucket order (concurrent batches lock
# the counters in the same order); returns each bucket's count including the claim.
_CLAIM = text(
    "INSERT INTO rate_limits (bucket, window_start, count) "
    "SELECT bucket, CAST(:window_start AS timestamptz), uses "
    "FROM unnest(CAST(:buckets AS text[]), CAST(:uses AS integer[])) AS u(bucket, uses) "
    "ON CONFLICT ON CONSTRAINT rate_limits_pkey "
    "DO UPDATE SET count = rate_limits.count + excluded.count "
    "RETURNING bucket, count"
)
_GIVE_BACK = text(
    "UPDATE rate_limits SET count = rate_limits.count - u.uses "
    "FROM unnest(CAST(:buckets AS text[]), CAST(:uses AS integer[])) AS u(bucket, uses) "
    "WHERE rate_limits.bucket = u.bucket AND rate_limits.window_start = :window_start"
)


@dataclass
class Allowance:
    """Uses claimed for a batch of requests: each request takes one or is refused. The
    counters stay locked until the transaction ends, so replicas never over-grant."""

    rule: RateLimit
    now: datetime
    claimed: dict[str, int]  # bucket → uses claimed for this batch
    left: dict[str, int]  # bucket → uses the rule still grants this batch
    taken: dict[str, int] = field(default_factory=dict)

    def take(self, bucket: str) -> RateLimited | None:
        """Count one use of `bucket`; past the limit, the refusal (nothing is counted)."""
        if self.left.get(bucket, 0) <= 0:
            start = window_start(self.now, self.rule.window)
            retry_after = math.ceil((start + self.rule.window - self.now).total_seconds())
            return RateLimited(bucket, self.rule, max(retry_after, 1))
        self.left[bucket] -= 1
        self.taken[bucket] = self.taken.get(bucket, 0) + 1
        return None

    async def give_back_unused(self, session: AsyncSession) -> None:
        """Uncount the claimed uses no request took: only work that happened is counted."""
        unused = {b: n - self.taken.get(b, 0) for b, n in self.claimed.items()}
        unused = {b: n for b, n in sorted(unused.items()) if n > 0}
        if unused:
            await session.execute(
                _GIVE_BACK,
                {
                    "buckets": list(unused),
                    "uses": list(unused.values()),
                    "window_start": window_start(self.now, self.rule.window),
                },
            )


async def claim(
    session: AsyncSession, rule: RateLimit, now: datetime, wanted: Mapping[str, int]
) -> Allowance:
    """Claim `wanted[bucket]` uses of each bucket in the window holding `now`."""
    buckets = sorted(b for b, n in wanted.items() if n > 0)
    if not buckets:
        return Allowance(rule, now, {}, {})
    rows = await session.execute(
        _CLAIM,
        {
            "buckets": buckets,
            "uses": [wanted[b] for b in buckets],
            "window_start": window_start(now, rule.window),
        },
    )
    counts: dict[str, int] = {bucket: int(count) for bucket, count in rows}
    claimed = {b: wanted[b] for b in buckets}
    left = {b: min(wanted[b], max(rule.limit - (counts[b] - wanted[b]), 0)) for b in buckets}
    return Allowance(rule, now, claimed, left)
