"""Await a condition on state that has no notification of its own (database rows)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    read: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    *,
    timeout: float = 45.0,
    interval: float = 0.05,
) -> T:
    """Re-read until `until(value)` holds; fails with the last value seen after `timeout`."""
    value = await read()
    try:
        async with asyncio.timeout(timeout):
            while not until(value):
                await asyncio.sleep(interval)
                value = await read()
    except TimeoutError:
        raise AssertionError(f"condition not met after {timeout}s; last value: {value!r}") from None
    return value
