"""Group commit: concurrent requests' writes done in shared transactions.

Each request pays a transaction's round trips and its commit; under load most of a
request's time goes there. Here a request queues its item and waits: while no batch is in
flight, its item starts one at the next turn of the event loop; items arriving while a
batch runs go together in the next. A lone request waits for nothing; 32 concurrent
clients share a handful of transactions.

Under load a batch first waits `linger` for company, as Postgres's `commit_delay` does
when `commit_siblings` transactions are active: only after a batch of at least
`LINGER_AFTER` items, and while the next one is not full. Each batch costs a transaction's
statements whatever its size, and without the wait the requests of a loaded process split
into two alternating batches: one in the database, one arriving. See the complaints
setting `COMPLAINTS_FILING_LINGER_MS` for what it bought.

The batch handler gets the transaction and the items, in arrival order, and returns one
outcome per item: a result, or an exception that refuses that item alone (the handler
writes nothing for it). If the handler raises instead, each item is run again in a
transaction of its own, so one bad request cannot fail the others; a transient fault
(database gone) fails them all, as it would have failed each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from shared.faults import is_transient
from shared.unit_of_work import Tx, UnitOfWork

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

BatchHandler = Callable[[Tx, Sequence[T]], Awaitable[Sequence[R | Exception]]]

# A batch lingers only after one of at least this many items (Postgres's commit_siblings
# defaults to 5): a lone client, or a few, never waits.
LINGER_AFTER = 5


class GroupCommit(Generic[T, R]):
    """Runs `handle` on batches of the items submitted while the previous batch ran."""

    def __init__(
        self,
        uow: UnitOfWork,
        handle: BatchHandler[T, R],
        *,
        max_batch: int = 64,
        linger: float = 0.0,
    ):
        self._uow = uow
        self._handle = handle
        self._max_batch = max_batch
        self._linger = linger
        self._last_batch = 0  # items in the batch before: a lone request after a crowd waits once
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """The item's result once its transaction committed; raises the item's refusal."""
        outcome: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, outcome))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        # A caller that goes away (client disconnect) leaves its item to be done anyway:
        # the shield keeps that from cancelling the batch.
        return await asyncio.shield(outcome)

    async def _drain(self) -> None:
        try:
            while self._queue:
                if (
                    self._linger
                    and self._last_batch >= LINGER_AFTER
                    and len(self._queue) < self._max_batch
                ):
                    await asyncio.sleep(self._linger)
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                self._last_batch = len(batch)
                await self._run(batch)
        finally:
            self._draining = None

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            outcomes = await self._in_transaction([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1 or is_transient(exc):
                outcomes = [exc] * len(batch)
            else:
                log.warning("a batch of %d failed, running each alone: %r", len(batch), exc)
                outcomes = [await self._alone(item) for item, _ in batch]
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _in_transaction(self, items: list[T]) -> Sequence[R | Exception]:
        async with self._uow() as tx:
            outcomes = await self._handle(tx, items)
            if len(outcomes) != len(items):  # a bug: commit nothing
                raise RuntimeError(f"{len(outcomes)} outcomes for {len(items)} items")
        return outcomes

    async def _alone(self, item: T) -> R | Exception:
        try:
            [outcome] = await self._in_transaction([item])
        except Exception as exc:
            return exc
        return outcome
