"""The one clock every service reads; in dev it can be moved forward to exercise timers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

# How far ahead of ours another system's clock may run: a time an event or a request
# gives beyond it is refused as in the future.
CLOCK_SKEW = timedelta(minutes=5)


class Clock:
    """Wall-clock time, always timezone-aware (UTC)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class DevClock(Clock):
    """A clock that can be advanced (POST /admin/clock in dev mode); never goes back."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self.advanced = asyncio.Event()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> datetime:
        """Move time forward and wake whoever waits on due timers."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += timedelta(seconds=seconds)
        self.advanced.set()
        return self.now()
