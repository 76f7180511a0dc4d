"""Durable timers: due-time jobs in Postgres, claimed with FOR UPDATE SKIP LOCKED.

A timer's effect and its row's deletion commit in one transaction while the row is
locked, so it fires exactly once across replicas and survives restarts. Timers are
created with `Tx.schedule(kind, key, due_at, payload)`; a handler may schedule the key it
fires for again (a recurring job), and the timer fires again at its new time.

An idle worker sleeps until the next pending timer falls due, as Postgres knew it when the
worker last looked, or as this process scheduled it since; at most `poll_interval`, for
the timers other processes schedule. Polling every 100 ms instead kept each idle service
at 5 % of a core.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bulk import Delete
from shared.clock import Clock, DevClock
from shared.contracts.events import OpsAlert
from shared.contracts.topics import OPS_ALERTS
from shared.faults import backoff_seconds, is_transient
from shared.logs import mask_pii
from shared.metrics import TIMERS_FIRED, TRANSIENT_FAILURES
from shared.tables import timers
from shared.unit_of_work import Tx, UnitOfWork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DueTimer:
    """A timer whose time has come, handed to the handler of its kind."""

    id: int
    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any]


TimerHandler = Callable[[Tx, list[DueTimer]], Awaitable[None]]


# A worker's look (shared.tables.CLAIM_TIMERS_QUERY): its due timers, and when it took
# fewer than it asked for, a row of only the next pending timer's due time.
_CLAIM = text(
    "SELECT * FROM claim_timers(CAST(:kinds AS text[]), CAST(:due_by AS timestamptz), :batch)"
)


@dataclass(frozen=True)
class Look:
    """What one claim found: the timers it took (in due order), and, when they were fewer
    than it asked for, when the first pending timer it did not take falls due (None: none
    is pending, or it took a full batch)."""

    due: list[DueTimer]
    next_due: datetime | None


async def claim(session: AsyncSession, kinds: Iterable[str], now: datetime, limit: int) -> Look:
    """Claim up to `limit` timers of these kinds due by `now`, oldest first, locked for the
    transaction; those another worker holds are skipped."""
    params = {"kinds": sorted(kinds), "due_by": now, "batch": limit}
    due, next_due = [], None
    for id_, kind, key, due_at, payload, look_ahead in await session.execute(_CLAIM, params):
        if id_ is None:
            next_due = look_ahead
        else:
            due.append(DueTimer(id_, kind, key, due_at, payload))
    # The claim's ORDER BY orders the CTE, not the statement's result: Postgres happens to
    # return the CTE's rows as produced, but only this sort promises the handlers due order.
    due.sort(key=lambda t: (t.due_at, t.id))
    return Look(due, next_due)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


# The longest an idle worker goes without looking: how late a timer that another process
# scheduled, or wrote into the table, may be found.
POLL_SECONDS = 1.0

# How soon an empty claim looks again when a due timer is held by another worker's claim.
_HELD_ELSEWHERE = timedelta(seconds=0.1)


class TimerCrew:
    """The timer workers of one process, told of the timers each commit of the process
    scheduled: the notice wakes one of them, and none for a timer a claim took already."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.workers: list[TimerWorker] = []
        self._kinds: set[str] = set()  # that any of them fires
        uow.on_timer_scheduled(self)

    def join(self, worker: TimerWorker, kinds: Iterable[str]) -> None:
        self.workers.append(worker)
        self._kinds.update(kinds)

    def __call__(self, scheduled: Mapping[tuple[str, str], datetime]) -> None:
        """`scheduled`: (kind, key) → due time. The task that committed them tells once
        its commit has returned; a worker's claim may have run in between and taken them.
        (In the notifications service, with two workers, every notice woke both: half of
        all looks found nothing.)"""
        fresh = [
            due_at
            for (kind, key), due_at in scheduled.items()
            if kind in self._kinds and not any(w.took(kind, key, due_at) for w in self.workers)
        ]
        if not fresh:
            return
        due_at = min(fresh)
        asleep = [(w.asleep_until, n) for n, w in enumerate(self.workers) if w.asleep_until]
        if asleep:  # the one waking first sees to it, woken now if it would wake too late
            until, first = min(asleep)
            if due_at < until:
                self.workers[first].wake()
            return
        for worker in self.workers:  # all looking: whichever is done first looks again
            worker.look_again_by(due_at)


class TimerWorker:
    """Fires due timers of the kinds it has handlers for. Workers sharing a `crew` (those
    of one process) share the notices of its commits; by default a worker is alone."""

    def __init__(
        self,
        *,
        service: str,
        uow: UnitOfWork,
        clock: Clock,
        handlers: Mapping[str, TimerHandler],
        batch_size: int = 500,
        poll_interval: float = POLL_SECONDS,
        max_attempts: int = 5,
        crew: TimerCrew | None = None,
    ) -> None:
        self.service = service
        self._uow = uow
        self._clock = clock
        self._handlers = dict(handlers)
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_attempts = max_attempts
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._next_due: datetime | None = None  # of the pending timers, when it last looked
        self._looked_at: datetime | None = None  # the `now` of that look's claim
        self._scheduled_since: datetime | None = None  # earliest committed here since then
        self._claimed: dict[tuple[str, str], datetime] = {}  # by the last look: due times
        self._asleep_until: datetime | None = None  # None while looking
        self.crew = crew or TimerCrew(uow)
        self.crew.join(self, self._handlers)

    def stop(self) -> None:
        self._stopping.set()

    @property
    def asleep_until(self) -> datetime | None:
        """When this worker looks next, while it sleeps; None while it looks."""
        return self._asleep_until

    def took(self, kind: str, key: str, due_at: datetime) -> bool:
        """Did its last look claim this timer, due then?"""
        return self._claimed.get((kind, key)) == due_at

    def wake(self) -> None:
        """Look now: a timer committed here falls due before the worker would wake."""
        self._wake.set()

    def look_again_by(self, due_at: datetime) -> None:
        """A timer committed here while the worker looks: its next sleep ends by `due_at`."""
        self._scheduled_since = _earliest(self._scheduled_since, due_at)

    async def run(self) -> None:
        """Fire due timers until stopped; waits out database outages."""
        attempt = 0
        while not self._stopping.is_set():
            try:
                fired = await self.fire_due()
                attempt = 0
            except Exception as exc:
                if not is_transient(exc):
                    raise
                TRANSIENT_FAILURES.labels(self.service, "timers").inc()
                log.warning("timer worker waiting for the database: %r", exc)
                await self._wait(backoff_seconds(attempt))
                attempt += 1
                continue
            if fired == 0 or (fired < self._batch_size and not self._held_elsewhere()):
                # A partial claim took all that was due and learnt when the next timer
                # falls due: it waits for that, as an empty one does. A timer a handler put
                # back (a bounded round) or another transaction of this process scheduled
                # meanwhile ends the sleep. While another worker holds due timers (a mass
                # of them falling due), a worker that found some looks again at once.
                await self._sleep()

    async def fire_due(self) -> int:
        """Fire one batch of due timers; returns how many were claimed. A partial claim
        also learns when the next pending timer falls due (`_sleep` waits for it)."""
        if not self._handlers:
            return 0
        self._asleep_until = self._next_due = None
        self._wake.clear()  # a wake-up for this look must not cut short a backoff after it
        try:
            async with self._uow() as tx:
                # A timer committed before the claim runs is the claim's to find: only one
                # committed from here on calls for another look. (In the notifications
                # service at 500 postings/s, 699 of 1,457 looks in 60 s found nothing.)
                self._scheduled_since = None
                # The look ahead comes with the claim: a look after the batch cost 5 round
                # trips (in the notifications service at 500 postings/s, 1,197 looks after
                # 926 deliveries, 3 to 6 ms each).
                look = await self._claim(tx)
                due, self._next_due = look.due, look.next_due
                self._claimed = {(t.kind, t.key): t.due_at for t in due}
                self._looked_at = tx.now
                if due:
                    await self._dispatch(tx, due)
            return len(due)
        except Exception as exc:
            if is_transient(exc):
                raise
            # Some handler fails for good: fire one by one so the others are not held up.
            log.warning("timer batch failed, firing one by one: %r", exc)
            return await self._fire_singly()

    async def _claim(self, tx: Tx, *, limit: int | None = None) -> Look:
        return await claim(tx.session, self._handlers, tx.now, limit or self._batch_size)

    async def _dispatch(self, tx: Tx, due: list[DueTimer]) -> None:
        by_kind: dict[str, list[DueTimer]] = defaultdict(list)
        for timer in due:
            by_kind[timer.kind].append(timer)
        for kind, group in by_kind.items():
            await self._handlers[kind](tx, group)
            TIMERS_FIRED.labels(self.service, kind).inc(len(group))
        # Deleted after the handlers, not in the claim: claiming and marking fired in one
        # UPDATE took the mass breach of 100,000 complaints from 19-20 s to 32-38 s (x1), and
        # marking right after the claim to 26 s. A timer a handler scheduled again stays: its
        # new due time stands. The delete is written at commit, in one statement with the
        # writes the handlers left for then. Deleted, not marked fired: a mark rewrote the
        # row and indexed it anew (Postgres here: 11.0 to 11.8 µs a timer against 1.8 to
        # 1.9 to delete it, batches of 1,000); what a timer did is in its handler's writes
        # and events.
        fired = [{"id": t.id} for t in due if (t.kind, t.key) not in tx.scheduled]
        tx.write_at_commit(Delete(timers, "id", fired))

    async def _fire_singly(self) -> int:
        fired = 0
        for _ in range(self._batch_size):
            try:
                async with self._uow() as tx:
                    due = (await self._claim(tx, limit=1)).due
                    if not due:
                        return fired
                    await self._dispatch(tx, due)
                fired += 1
            except Exception as exc:
                if is_transient(exc):
                    raise
                await self._record_failure(due[0], exc)
        return fired

    async def _record_failure(self, timer: DueTimer, exc: Exception) -> None:
        """Push a failing timer back with backoff; after the last attempt it is parked."""
        async with self._uow() as tx:
            attempts = await tx.session.scalar(
                update(timers)
                .where(timers.c.id == timer.id)
                .values(attempts=timers.c.attempts + 1, last_error=mask_pii(repr(exc))[:2000])
                .returning(timers.c.attempts)
            )
            attempts = int(attempts or 0)
            parked = attempts >= self._max_attempts
            delay = timedelta(days=3650) if parked else timedelta(seconds=30 * 2**attempts)
            await tx.session.execute(
                update(timers).where(timers.c.id == timer.id).values(due_at=tx.now + delay)
            )
            if parked:
                tx.emit(
                    OPS_ALERTS,
                    OpsAlert(
                        service=self.service,
                        severity="critical",
                        kind="timer_failed",
                        message=f"timer {timer.kind}/{timer.key} parked after {attempts} attempts",
                        details={"kind": timer.kind, "key": timer.key, "error": repr(exc)[:500]},
                    ),
                    key=self.service,
                )
        log.error("timer %s/%s failed (attempt %d): %r", timer.kind, timer.key, attempts, exc)

    def _held_elsewhere(self) -> bool:
        """The next pending timer the last look found was due by then: another worker
        holds it (a claim skips locked timers)."""
        return (
            self._next_due is not None
            and self._looked_at is not None
            and self._next_due <= self._looked_at
        )

    async def _sleep(self) -> None:
        """Until the next known timer falls due (at most `poll_interval`), or one scheduled
        here since falls due sooner. A due timer another worker holds is retried soon."""
        now = self._clock.now()
        until = now + timedelta(seconds=self._poll_interval)
        if self._next_due is not None:
            if self._held_elsewhere():
                until = min(until, now + _HELD_ELSEWHERE)
            else:
                until = min(until, self._next_due)  # at once if it fell due during the batch
        if self._scheduled_since is not None:
            until = min(until, self._scheduled_since)
        self._asleep_until = until
        await self._wait((until - now).total_seconds())

    async def _wait(self, seconds: float) -> None:
        waits = [
            asyncio.ensure_future(self._stopping.wait()),
            asyncio.ensure_future(self._wake.wait()),
        ]
        if isinstance(self._clock, DevClock):
            self._clock.advanced.clear()
            waits.append(asyncio.ensure_future(self._clock.advanced.wait()))
        _, pending = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
