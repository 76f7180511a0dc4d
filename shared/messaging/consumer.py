"""Consumer runner: batches from Kafka → inbox + handler in one transaction → commit offsets.

Guarantees (DESIGN.md, "Processing guarantees"):
- a batch's inbox records, state changes and outgoing events commit in one transaction;
- offsets are committed only after that transaction commits — at most every
  `commit_interval` while records keep coming, at once when the consumer goes idle, stops
  or loses partitions (a record read again after a crash is a duplicate for the inbox);
- a message that can never be processed is dead-lettered (through the outbox) and the
  consumer carries on; a transient fault is retried with backoff and nothing is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord

from shared.clock import CLOCK_SKEW
from shared.contracts import BadEvent, Envelope, parse_event
from shared.faults import backoff_seconds, is_transient
from shared.messaging import inbox
from shared.messaging.dead_letter import dead_letter, dedupe_id
from shared.metrics import CONSUMER_LAG, EVENTS_CONSUMED, HANDLER_SECONDS, TRANSIENT_FAILURES
from shared.unit_of_work import Tx, UnitOfWork

log = logging.getLogger(__name__)

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
BatchHandler = Callable[[Tx, list[Envelope[Any]]], Awaitable[None]]


class RejectedEvent(Exception):
    """Raised by a handler for one event that breaks a business rule of input (dead-letter it)."""

    def __init__(self, event: Envelope[Any], reason: str, error_type: str = "rejected") -> None:
        super().__init__(reason)
        self.event = event
        self.reason = reason
        self.error_type = error_type


def refuse_future(event: Envelope[Any], at: datetime, where: str, now: datetime) -> datetime:
    """`at`, unless it lies more than CLOCK_SKEW ahead of `now` (dead-letter the event): a
    time from the future would stand as the latest for good, hiding every real one after it."""
    if at > now + CLOCK_SKEW:
        raise RejectedEvent(event, f"{where}: must not be in the future", "invalid_field")
    return at


def booking_time(event: Envelope[Any], now: datetime) -> datetime:
    """When a `BalanceChanged` posting was booked (`booked_at`, else the envelope's
    `occurred_at`), refused in the future."""
    booked_at = event.data.booked_at
    if booked_at is None:
        return refuse_future(event, event.occurred_at, "occurred_at", now)
    return refuse_future(event, booked_at, "data.booked_at", now)


@dataclass(frozen=True)
class Subscription:
    """A named consumer of a service: its topics and its batch handler."""

    name: str
    topics: tuple[str, ...]
    handler: BatchHandler


class _Assignment(ConsumerRebalanceListener):
    def __init__(self, runner: ConsumerRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._runner.commit_processed()  # the next owner starts after what we did
        self._runner.forget_lag(revoked)
        self._runner.assignment_changed.set()

    async def on_partitions_assigned(self, assigned: object) -> None:
        self._runner.claim_first = True  # what was done after the last offset commit comes again
        self._runner.assignment_changed.set()


@dataclass
class _Item:
    record: Record
    event: Envelope[Any] | None
    problem: BadEvent | None
    dedupe_id: str


class ConsumerRunner:
    """Runs one subscription until stopped; never dies on a single message."""

    def __init__(
        self,
        *,
        service: str,
        subscription: Subscription,
        uow: UnitOfWork,
        bootstrap_servers: str,
        batch_size: int = 500,
        max_handler_attempts: int = 3,
        group_id: str | None = None,
        member: int = 0,
        commit_interval: float = 0.5,
        fetch_max_wait_ms: int = 200,
        pace: float = 0.0,
    ) -> None:
        self.service = service
        self.subscription = subscription
        self.consumer_name = f"{service}.{subscription.name}"  # the inbox's name: one per group
        self.member_name = self.consumer_name if member == 0 else f"{self.consumer_name}#{member}"
        self.group_id = group_id or self.consumer_name
        self._uow = uow
        self._bootstrap = bootstrap_servers
        self._batch_size = batch_size
        self._max_attempts = max_handler_attempts
        self._commit_interval = commit_interval
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._pace = pace
        self._processed: dict[TopicPartition, int] = {}  # next offsets, not yet committed
        self._last_commit = 0.0
        self._kafka: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self.assignment_changed = asyncio.Event()
        self.lag: int | None = None  # behind the fetched high-water marks; None until known
        self._lag_as_of = 0.0  # wall-clock seconds of the oldest high-water mark behind `lag`
        self.claim_first = True  # see `_apply`

    @property
    def assigned(self) -> bool:
        """True once the group coordinator gave this consumer its partitions."""
        return bool(self._kafka and self._kafka.assignment())

    async def wait_assigned(self, timeout: float = 60.0) -> None:
        """Wait until the group has given this consumer partitions (tests, readiness)."""
        async with asyncio.timeout(timeout):
            while not self.assigned:
                self.assignment_changed.clear()
                await self.assignment_changed.wait()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Consume until stop(); reconnects after broker outages."""
        attempt = 0
        while not self._stopping.is_set():
            try:
                await self._consume()
                attempt = 0
            except KafkaError as exc:
                TRANSIENT_FAILURES.labels(self.service, "consumer").inc()
                log.warning("consumer %s lost the broker: %r", self.consumer_name, exc)
                await self._sleep(backoff_seconds(attempt))
                attempt += 1

    async def _consume(self) -> None:
        self._kafka = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self.group_id,
            client_id=self.member_name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            max_poll_records=self._batch_size,
        )
        self._kafka.subscribe(list(self.subscription.topics), listener=_Assignment(self))
        await self._kafka.start()
        try:
            while not self._stopping.is_set():
                batches = await self._kafka.getmany(timeout_ms=200, max_records=self._batch_size)
                fetched_at = time.monotonic()
                records = [r for part in batches.values() for r in part]
                if not records:
                    await self.commit_processed()
                    await self._record_lag()
                    continue
                if not await self._process([self._decode(r) for r in records]):
                    break  # stopping mid-retry: leave this batch uncommitted
                self._mark_processed(batches)
                if time.monotonic() - self._last_commit >= self._commit_interval:
                    await self.commit_processed()
                await self._record_lag()
                if len(records) < self._batch_size:
                    await self._pause(fetched_at)
            await self.commit_processed()
        finally:
            await self._kafka.stop()
            self._kafka = None

    def _mark_processed(self, batches: Mapping[TopicPartition, Sequence[Record]]) -> None:
        """Offsets after records whose transaction committed, to be committed to the group.
        A partition's records come in offset order: its last one's offset is the highest."""
        for tp, part in batches.items():
            if part:
                self._processed[tp] = max(self._processed.get(tp, 0), part[-1].offset + 1)

    async def commit_processed(self) -> None:
        """Commit the offsets of the processed records to the group (if any are pending)."""
        offsets, self._processed = self._processed, {}
        self._last_commit = time.monotonic()
        if not offsets or self._kafka is None:
            return
        # Only partitions it still owns: a batch that was in its transaction when a rebalance
        # took some of them marks them processed anyway, and committing one not assigned
        # failed (IllegalStateError) before reaching the broker, which tore the consumer
        # down and forced the group through two more rebalances. Their new owner re-reads
        # them and the inbox drops what was processed here.
        owned = self._kafka.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in owned}
        if not offsets:
            return
        try:
            await self._kafka.commit(offsets)
        except CommitFailedError as exc:
            # A rebalance took the partitions; the new owner re-reads and the inbox dedupes.
            log.warning("commit failed for %s: %r", self.consumer_name, exc)

    def forget_lag(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the lag gauges of partitions this consumer no longer owns: left behind, their
        last value would be added to the new owner's in every fleet-wide sum. Its own lag is
        unknown again until it has fetched from its new assignment: a 0 kept through the
        rebalance would say "caught up" while the group's partitions wait for owners."""
        self.lag = None
        self._lag_as_of = 0.0
        for tp in partitions:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.service, self.subscription.name, tp.topic, tp.partition)

    async def _record_lag(self) -> None:
        """Lag from the high-water marks of fetch responses.

        Not from ListOffsets: the embedded broker answers it with a batch count.
        """
        assert self._kafka is not None
        assignment = self._kafka.assignment()
        total = 0
        as_of = time.time()
        for tp in assignment:
            highwater = self._kafka.highwater(tp)
            if highwater is None:
                total = -1  # not fetched yet: unknown
                continue
            as_of = min(as_of, self._kafka.last_poll_timestamp(tp) / 1000)
            lag = max(highwater - await self._kafka.position(tp), 0)
            total += lag if total >= 0 else 0
            CONSUMER_LAG.labels(self.service, self.subscription.name, tp.topic, tp.partition).set(
                lag
            )
        self.lag = total if assignment and total >= 0 else None
        self._lag_as_of = as_of

    def caught_up_since(self, moment: float) -> bool:
        """Lag 0 by high-water marks the broker read after `moment` (wall-clock seconds).

        A fetch response arrives at most the fetch wait (plus a round trip) after its request
        reached the broker; a response received later than that after `moment` was answered
        from the log as it stood after `moment`. A 0 from an older response would miss what
        was published just before: the test that asks would read the database too early.
        """
        window = self._fetch_max_wait_ms / 1000 + 0.1
        return self.lag == 0 and self._lag_as_of >= moment + window

    # --- processing ------------------------------------------------------------------

    async def _process(self, items: list[_Item]) -> bool:
        """Process a batch until it is done; False only when stopped during retries."""
        transient_attempt = 0
        failures = 0
        while True:
            try:
                await self._apply(items)
                return True
            except RejectedEvent as rejected:
                self._reject(items, rejected)
            except Exception as exc:
                if is_transient(exc):
                    TRANSIENT_FAILURES.labels(self.service, "consumer").inc()
                    log.warning("transient failure in %s, retrying: %r", self.consumer_name, exc)
                    if await self._sleep(backoff_seconds(transient_attempt)):
                        return False
                    transient_attempt += 1
                    continue
                failures += 1
                log.warning("handler %s failed (%d): %r", self.consumer_name, failures, exc)
                if failures < self._max_attempts:
                    continue
                good = [i for i in items if i.problem is None]
                if len(good) > 1:
                    # Find the culprit: one event per transaction from here on.
                    for item in items:
                        if not await self._process([item]):
                            return False
                    return True
                if not good:
                    raise  # dead-lettering itself fails: a platform fault, not bad input
                good[0].problem = BadEvent(f"{type(exc).__name__}: {exc}", "handler_error")

    def _decode(self, record: Record) -> _Item:
        try:
            event = parse_event(record.topic, record.value)
            return _Item(record, event, None, str(event.event_id))
        except BadEvent as problem:
            return _Item(record, None, problem, dedupe_id(record))

    def _reject(self, items: list[_Item], rejected: RejectedEvent) -> None:
        for item in items:
            if item.event is rejected.event:
                item.problem = BadEvent(rejected.reason, rejected.error_type)
                return
        raise RuntimeError("handler rejected an event that is not in its batch") from rejected

    async def _apply(self, items: list[_Item]) -> None:
        """One transaction: handle the batch's new events, dead-letter the bad, record their
        ids in the inbox. Recorded with the commit (one round trip fewer) unless duplicates
        are likely: after the consumer got partitions (records processed before the last
        offset commit are read again) and after a batch that held some, until a batch
        holds none. A duplicate recorded with the commit fails it; the batch then runs
        again, claiming first."""
        started = time.perf_counter()
        first: dict[str, _Item] = {}
        for item in items:
            first.setdefault(item.dedupe_id, item)  # a duplicate inside the batch counts once
        batch = list(first.values())
        fresh: list[_Item] | None = None
        if not self.claim_first:
            try:
                fresh = await self._transaction(batch, claim_first=False)
            except Exception as exc:
                if not inbox.is_duplicate(exc):
                    raise
                self.claim_first = True
        if fresh is None:
            fresh = await self._transaction(batch, claim_first=True)
            self.claim_first = len(fresh) < len(batch)
        HANDLER_SECONDS.labels(self.service, self.subscription.name).observe(
            time.perf_counter() - started
        )
        fresh_set = {id(i) for i in fresh}
        # Counted per batch: a labelled counter's lookup costs about 1 µs, per event before.
        outcomes = Counter(
            (
                item.record.topic,
                "duplicate"
                if id(item) not in fresh_set
                else "dead_lettered"
                if item.problem
                else "processed",
            )
            for item in items
        )
        for (topic, outcome), count in outcomes.items():
            EVENTS_CONSUMED.labels(self.service, topic, outcome).inc(count)

    async def _transaction(self, batch: list[_Item], *, claim_first: bool) -> list[_Item]:
        """Handle `batch` (distinct ids) in one transaction; returns the items it took as
        new: all of them, or with `claim_first` those the inbox had not seen."""
        async with self._uow() as tx:
            if claim_first:
                new = await inbox.claim(
                    tx.session, self.consumer_name, (i.dedupe_id for i in batch)
                )
                batch = [i for i in batch if i.dedupe_id in new]
            events = [i.event for i in batch if i.problem is None and i.event is not None]
            if events:
                await self.subscription.handler(tx, events)
            for item in batch:
                if item.problem is not None:
                    dead_letter(
                        tx,
                        item.record,
                        service=self.service,
                        consumer=self.consumer_name,
                        error_type=item.problem.error_type,
                        reason=item.problem.reason,
                        at=tx.now,
                    )
            if not claim_first:
                await inbox.record(tx, self.consumer_name, (i.dedupe_id for i in batch))
        return batch

    async def _pause(self, fetched_at: float) -> None:
        """Caught up (a batch short of full): wait until `pace` has passed since the batch
        was fetched. Partitions whose records wait in the client are not fetched again
        meanwhile, so each is read from the broker at most once a `pace`."""
        left = self._pace - (time.monotonic() - fetched_at)
        if left > 0:
            await self._sleep(left)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; True when stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True
