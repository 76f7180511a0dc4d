"""Group commit: requests arriving while a batch runs share the next transaction; one bad
request fails alone; a transient fault fails all; a caller that leaves cancels nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from shared.group_commit import LINGER_AFTER, GroupCommit

pytestmark = pytest.mark.unit


class Refused(Exception):
    pass


class FakeUnitOfWork:
    """Records each transaction's items and whether it committed."""

    def __init__(self) -> None:
        self.transactions: list[tuple[list[Any], bool]] = []

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[list[Any]]:
        items: list[Any] = []
        try:
            yield items
        except BaseException:
            self.transactions.append((items, False))
            raise
        self.transactions.append((items, True))


def doubling(fail_on: int | None = None, refuse: int | None = None, delay: float = 0.01) -> Any:
    async def handle(tx: list[Any], items: Sequence[int]) -> list[int | Exception]:
        tx.extend(items)
        await asyncio.sleep(delay)  # the database round trips
        if fail_on in items:
            raise ValueError(f"a constraint broken by {fail_on}")
        return [Refused(n) if n == refuse else 2 * n for n in items]

    return handle


async def submit_while_running(group: GroupCommit[int, int], n: int) -> list[Any]:
    """Request 0, then n-1 more while its batch is in flight."""
    first = asyncio.create_task(group.submit(0))
    await asyncio.sleep(0.005)
    more = [group.submit(k) for k in range(1, n)]
    return list(await asyncio.gather(first, *more, return_exceptions=True))


async def test_requests_arriving_while_a_batch_runs_share_the_next_transaction():
    uow = FakeUnitOfWork()
    group: GroupCommit[int, int] = GroupCommit(uow, doubling())  # type: ignore[arg-type]
    assert await submit_while_running(group, 10) == [2 * n for n in range(10)]
    assert uow.transactions == [([0], True), (list(range(1, 10)), True)]


async def test_requests_of_the_same_moment_share_the_first_transaction():
    uow = FakeUnitOfWork()
    group: GroupCommit[int, int] = GroupCommit(uow, doubling())  # type: ignore[arg-type]
    assert await asyncio.gather(*(group.submit(n) for n in range(3))) == [0, 2, 4]
    assert uow.transactions == [([0, 1, 2], True)]


async def test_batches_are_capped():
    uow = FakeUnitOfWork()
    group: GroupCommit[int, int] = GroupCommit(uow, doubling(), max_batch=4)  # type: ignore[arg-type]
    await submit_while_running(group, 10)
    assert [items for items, _ in uow.transactions] == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]


async def test_under_load_a_batch_waits_for_company_before_it_starts():
    """After a batch of LINGER_AFTER items, the next waits `linger`: requests arriving
    meanwhile join it instead of starting a third transaction."""
    uow = FakeUnitOfWork()
    group: GroupCommit[int, int] = GroupCommit(uow, doubling(delay=0.05), linger=1.0)  # type: ignore[arg-type]
    crowd = [asyncio.create_task(group.submit(n)) for n in range(LINGER_AFTER)]
    await asyncio.sleep(0.01)  # the crowd's batch is in flight
    during = asyncio.create_task(group.submit(10))
    await asyncio.sleep(0.15)  # that batch committed; the next one is waiting for company
    late = [asyncio.create_task(group.submit(n)) for n in (11, 12)]
    await asyncio.gather(*crowd, during, *late)
    assert [items for items, _ in uow.transactions] == [list(range(LINGER_AFTER)), [10, 11, 12]]


async def test_a_lone_request_or_a_few_never_wait_for_company():
    uow = FakeUnitOfWork()
    group: GroupCommit[int, int] = GroupCommit(uow, doubling(), linger=60.0)  # type: ignore[arg-type]
    assert await asyncio.wait_for(group.submit(1), timeout=5) == 2
    few = [group.submit(n) for n in range(LINGER_AFTER - 1)]
    assert await asyncio.wait_for(asyncio.gather(*few), timeout=5) == [0, 2, 4, 6]
    assert await asyncio.wait_for(group.submit(7), timeout=5) == 14


async def test_a_refused_request_fails_alone_in_a_committed_batch():
    uow = FakeUnitOfWork()
    group: GroupCommit[int, int] = GroupCommit(uow, doubling(refuse=3))  # type: ignore[arg-type]
    results = await asyncio.gather(*(group.submit(n) for n in range(5)), return_exceptions=True)
    assert [type(r).__name__ if isinstance(r, Exception) else r for r in results] == [
        0, 2, 4, "Refused", 8,
    ]  # fmt: skip
    assert all(committed for _, committed in uow.transactions)


async def test_a_failing_batch_is_run_again_one_by_one():
    uow = FakeUnitOfWork()
    group: GroupCommit[int, int] = GroupCommit(uow, doubling(fail_on=3))  # type: ignore[arg-type]
    results = await submit_while_running(group, 5)
    assert results[:3] + results[4:] == [0, 2, 4, 8]
    assert isinstance(results[3], ValueError)
    assert ([1, 2, 3, 4], False) in uow.transactions  # the shared attempt rolled back
    assert [items for items, committed in uow.transactions if committed] == [[0], [1], [2], [4]]


async def test_a_transient_fault_fails_every_request_of_the_batch_without_retrying():
    uow = FakeUnitOfWork()

    async def database_gone(tx: list[Any], items: Sequence[int]) -> list[int | Exception]:
        tx.extend(items)
        await asyncio.sleep(0.01)
        raise ConnectionRefusedError("database gone")

    group: GroupCommit[int, int] = GroupCommit(uow, database_gone)  # type: ignore[arg-type]
    results = await submit_while_running(group, 4)
    assert all(isinstance(r, ConnectionRefusedError) for r in results)
    assert [items for items, _ in uow.transactions] == [[0], [1, 2, 3]]


async def test_a_caller_that_goes_away_does_not_cancel_the_others():
    uow = FakeUnitOfWork()
    group: GroupCommit[int, int] = GroupCommit(uow, doubling(delay=0.05))  # type: ignore[arg-type]
    leaving = asyncio.create_task(group.submit(1))
    staying = asyncio.create_task(group.submit(2))
    await asyncio.sleep(0.01)
    leaving.cancel()
    assert await staying == 4
    assert uow.transactions == [([1, 2], True)]  # the leaver's item was done all the same


async def test_a_handler_that_loses_an_outcome_commits_nothing():
    uow = FakeUnitOfWork()

    async def lossy(tx: list[Any], items: Sequence[int]) -> list[int | Exception]:
        tx.extend(items)
        return [2 * n for n in items][1:]

    group: GroupCommit[int, int] = GroupCommit(uow, lossy)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="0 outcomes for 1 items"):
        await group.submit(1)
    assert uow.transactions == [([1], False)]
