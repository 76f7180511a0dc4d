"""Outbox and relay: rollback publishes nothing, a restarted relay catches up, order per key."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError
from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.bulk import APPEND_INLINE_ROWS
from shared.clock import DevClock
from shared.contracts.events import TierChanged
from shared.contracts.topics import TIER_CHANGED
from shared.db import create_engine, session_factory
from shared.messaging.producer import Producer
from shared.messaging.relay import OutboxRelay, Purged
from shared.tables import inbox, outbox, timers
from shared.testing.infra import Infrastructure
from shared.testing.kafka import TopicWatcher, value_of
from shared.testing.waiting import eventually
from shared.unit_of_work import UnitOfWork
from tests.integration.conftest import make_probe_schema
from tests.integration.probe import effects as probe_effects

pytestmark = pytest.mark.integration


def tier_changed(customer: str, total: int) -> TierChanged:
    return TierChanged(
        customer_id=customer,
        previous_tier=None,
        tier="ordinary",
        direction="initial",
        total_balance=Decimal(total),
        basis="balance",
        maintenance_team="branch_service",
        evaluated_at=datetime.now(UTC),
    )


async def emit_rounds(uow: UnitOfWork, prefix: str, rounds: int) -> list[str]:
    """Three new customers; transaction n emits a TierChanged of total n for each of them."""
    customers = [f"{prefix}-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for n in range(rounds):
        async with uow() as tx:
            for customer in customers:
                tx.emit(TIER_CHANGED, tier_changed(customer, n), key=customer)
    return customers


def totals_by_key(records: list[Any]) -> dict[bytes, list[int]]:
    """The total_balance of each key's TierChanged records, in the order they arrived."""
    sequences: dict[bytes, list[int]] = defaultdict(list)
    for record in records:
        sequences[record.key].append(int(value_of(record)["data"]["total_balance"]))
    return sequences


@pytest.fixture
async def tier_topic(infra):
    watcher = await TopicWatcher(infra.bootstrap_servers, TIER_CHANGED).start()
    yield watcher
    await watcher.stop()


async def test_event_emitted_in_rolled_back_transaction_is_never_published(probe, tier_topic):
    customer = f"O-{uuid.uuid4().hex[:10]}"
    with pytest.raises(RuntimeError):
        async with probe.runtime.uow() as tx:
            tx.emit(TIER_CHANGED, tier_changed(customer, 1), key=customer)
            raise RuntimeError("the state change failed")
    async with probe.runtime.uow() as tx:
        tx.emit(TIER_CHANGED, tier_changed(customer, 2), key=customer)
    # Same key, same partition: once the second event is seen, the first would have been.
    [record] = await tier_topic.wait_for(lambda r: r.key == customer.encode())
    assert value_of(record)["data"]["total_balance"] == "2"


@dataclass
class RelaySchema:
    """A fresh probe schema with a unit of work and a started producer, for a relay."""

    infra: Infrastructure
    schema: str
    sessions: async_sessionmaker[AsyncSession]
    uow: UnitOfWork
    producer: Producer

    def relay(self, producer: Any = None, **options: Any) -> OutboxRelay:
        return OutboxRelay(
            service="probe",
            schema=self.schema,
            sessions=self.sessions,
            producer=producer or self.producer,
            database_url=self.infra.database_url,
            **options,
        )

    async def unsent(self) -> int:
        async with self.sessions() as session:
            count = await session.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
            )
        return int(count or 0)


@pytest.fixture
async def relay_schema(infra) -> AsyncIterator[RelaySchema]:
    schema = infra.new_schema("relay")
    await make_probe_schema(infra, schema)
    engine = create_engine(infra.database_url, schema, application_name="test-relay")
    sessions = session_factory(engine)
    producer = Producer(infra.bootstrap_servers, idempotence=False, client_id="test-relay")
    await producer.start()
    try:
        yield RelaySchema(
            infra, schema, sessions, UnitOfWork(sessions, DevClock(), "probe"), producer
        )
    finally:
        await producer.stop()
        await engine.dispose()


async def test_relay_started_after_commit_publishes_what_was_committed(relay_schema, tier_topic):
    """Rows committed while no relay ran (e.g. it was killed) are published on restart."""
    customers = [f"R-{uuid.uuid4().hex[:8]}" for _ in range(5)]
    for customer in customers:
        async with relay_schema.uow() as tx:
            tx.emit(TIER_CHANGED, tier_changed(customer, 1), key=customer)

    relay = relay_schema.relay()
    task = asyncio.create_task(relay.run())
    try:
        wanted = {c.encode() for c in customers}
        records = await tier_topic.wait_for(lambda r: r.key in wanted, count=5)
        assert {r.key for r in records} == wanted
        # The relay deletes rows after the broker acknowledged them, in its own commit:
        # a reader may see the records a moment before the rows go.
        await eventually(relay_schema.unsent, lambda n: n == 0)
    finally:
        relay.stop()
        await task


async def test_a_relay_publishes_nothing_while_another_holds_the_schemas_lock(
    relay_schema, tier_topic
):
    """One relay per schema at a time: a second relay's look (lock and first read in one
    statement) publishes nothing while the lock is held, and all once it is free."""
    customers = [f"L-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    async with relay_schema.uow() as tx:
        for customer in customers:
            tx.emit(TIER_CHANGED, tier_changed(customer, 1), key=customer)
    relay = relay_schema.relay()
    name = f"outbox.{relay_schema.schema}"
    async with relay_schema.sessions() as other, other.begin():  # the other relay's hold
        await other.execute(select(func.pg_advisory_xact_lock(func.hashtext(name))))
        assert await relay.publish_batch() == 0
        assert await relay_schema.unsent() == 3
    assert await relay.publish_batch() == 3
    wanted = {c.encode() for c in customers}
    records = await tier_topic.wait_for(lambda r: r.key in wanted, count=3)
    assert {r.key for r in records} == wanted
    assert await relay_schema.unsent() == 0


async def test_per_key_order_is_preserved(probe, tier_topic):
    # several events per transaction, interleaving keys
    customers = await emit_rounds(probe.runtime.uow, "K", rounds=60)
    wanted = {c.encode() for c in customers}
    sequences = totals_by_key(await tier_topic.wait_for(lambda r: r.key in wanted, count=180))
    assert all(seq == list(range(60)) for seq in sequences.values()), sequences


async def test_relay_publishes_several_batches_per_transaction_in_order(relay_schema, tier_topic):
    """Batch n+1 is queued before batch n is acknowledged: order per key still holds, each
    row goes out once and is no longer unsent, and a transaction stops at its batch limit."""
    customers = await emit_rounds(relay_schema.uow, "B", rounds=20)

    relay = relay_schema.relay(batch_size=7, batches_per_transaction=4)
    assert [await relay.publish_batch() for _ in range(4)] == [28, 28, 4, 0]
    wanted = {c.encode() for c in customers}
    sequences = totals_by_key(await tier_topic.wait_for(lambda r: r.key in wanted, count=60))
    assert all(seq == list(range(20)) for seq in sequences.values()), sequences
    assert await relay_schema.unsent() == 0


class _RefusesSecondBatch:
    """A producer whose broker acknowledges the first batch and refuses the second."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self.batches = 0
        self.forwarded = 0  # messages handed to the broker

    async def enqueue(self, messages: Any) -> asyncio.Future[list[object]]:
        self.batches += 1
        if self.batches != 2:
            batch = list(messages)
            self.forwarded += len(batch)
            return await self._producer.enqueue(batch)
        refused: asyncio.Future[list[object]] = asyncio.get_running_loop().create_future()
        refused.set_exception(KafkaTimeoutError("no acknowledgement"))
        return refused


async def test_a_refused_batch_leaves_its_transaction_unsent(relay_schema, tier_topic):
    """A batch the broker refuses fails its whole transaction: no row of it stays marked
    sent (or deleted), those of batches acknowledged before included, and the next one
    publishes them."""
    customers = await emit_rounds(relay_schema.uow, "U", rounds=5)

    broker = _RefusesSecondBatch(relay_schema.producer)
    refusing = relay_schema.relay(broker, batch_size=4, batches_per_transaction=4)
    with pytest.raises(KafkaTimeoutError):
        await refusing.publish_batch()
    assert await relay_schema.unsent() == 15

    assert await relay_schema.relay(batch_size=4, batches_per_transaction=4).publish_batch() == 15
    assert await relay_schema.unsent() == 0
    # What the refused transaction handed to the broker is on the topic too: then all again.
    wanted = {c.encode() for c in customers}
    count = broker.forwarded + 15
    sequences = totals_by_key(await tier_topic.wait_for(lambda r: r.key in wanted, count=count))
    assert all(seq[-5:] == list(range(5)) for seq in sequences.values()), sequences


async def test_a_row_being_retired_elsewhere_is_not_published_again(relay_schema, tier_topic):
    """The relay's read locks what it reads: a row another transaction is deleting (as a
    relay retiring it would) is waited for, then left out, not published a second time.
    The relay's first read runs in a snapshot taken before it held the schema's lock, so
    rows another relay retired just then would otherwise be read as unsent."""
    await emit_rounds(relay_schema.uow, "S", rounds=1)  # three rows
    relay = relay_schema.relay()
    async with relay_schema.sessions() as other, other.begin():
        first = await other.scalar(select(func.min(outbox.c.id)))
        await other.execute(delete(outbox).where(outbox.c.id == first))
        publishing = asyncio.create_task(relay.publish_batch())
        await asyncio.sleep(0.5)
        assert not publishing.done()  # waiting for the row's lock
    assert await publishing == 2
    assert await relay_schema.unsent() == 0


async def _outbox_rows(session: AsyncSession, key: str) -> int:
    query = select(func.count()).select_from(outbox).where(outbox.c.key == key.encode())
    return int(await session.scalar(query) or 0)


@pytest.mark.parametrize("begun", [True, False], ids=["begun", "first-in-transaction"])
@pytest.mark.parametrize(
    "messages", [1, APPEND_INLINE_ROWS + 1], ids=["in-the-commit-statement", "copied"]
)
async def test_outbox_rows_are_written_in_the_transaction_and_undone_with_it(
    relay_schema, begun, messages
):
    """A few messages are inserted in the commit's statement, more are copied (COPY once the
    transaction has begun, INSERT when they are its first statement); a later failure
    takes them back either way. Appended rows (`Tx.append`) go the same ways."""
    customer = f"C-{uuid.uuid4().hex[:8]}"
    effects = [
        {"event_id": f"e{n}", "customer_id": customer, "txn_id": "t"} for n in range(messages)
    ]
    with pytest.raises(RuntimeError):
        async with relay_schema.uow() as tx:
            if begun:
                await tx.session.execute(select(1))
            await tx.append(probe_effects, effects)
            for n in range(messages):
                tx.emit(TIER_CHANGED, tier_changed(customer, n), key=customer)
            await tx.flush()
            assert await _outbox_rows(tx.session, customer) == messages
            assert await _effects_of(tx.session, customer) == messages
            raise RuntimeError("the state change failed after the outbox was written")
    async with relay_schema.sessions() as session:
        assert await _outbox_rows(session, customer) == 0
        assert await _effects_of(session, customer) == 0

    async with relay_schema.uow() as tx:
        if begun:
            await tx.session.execute(select(1))
        await tx.append(probe_effects, effects)
        for n in range(messages):
            tx.emit(TIER_CHANGED, tier_changed(customer, n), key=customer)
    async with relay_schema.sessions() as session:
        assert await _outbox_rows(session, customer) == messages
        assert await _effects_of(session, customer) == messages


async def _effects_of(session: AsyncSession, customer: str) -> int:
    query = (
        select(func.count())
        .select_from(probe_effects)
        .where(probe_effects.c.customer_id == customer)
    )
    return int(await session.scalar(query) or 0)


@pytest.mark.parametrize(
    "messages", [1, APPEND_INLINE_ROWS + 1], ids=["in-the-commit-statement", "copied"]
)
async def test_relay_wakes_on_outbox_rows_however_written(relay_schema, tier_topic, messages):
    """The outbox trigger's NOTIFY fires for the INSERT inside the commit's statement (a
    few messages) as for a COPY (more): with a poll interval far beyond the wait, only the
    notification can bring the rows out in time. Either way they go out in emit order."""
    relay = relay_schema.relay(poll_interval=600)
    task = asyncio.create_task(relay.run())
    try:
        await eventually(relay_schema.unsent, lambda n: n == 0)
        await asyncio.sleep(0.5)  # the relay is listening and idle
        customer = f"W-{uuid.uuid4().hex[:8]}"
        async with relay_schema.uow() as tx:
            await tx.session.execute(select(1))
            for n in range(messages):
                tx.emit(TIER_CHANGED, tier_changed(customer, n), key=customer)
        records = await tier_topic.wait_for(
            lambda r: r.key == customer.encode(), count=messages, timeout=10
        )
        assert totals_by_key(records)[customer.encode()] == list(range(messages))
    finally:
        relay.stop()
        await task


async def test_a_commit_wakes_the_relay_of_its_process_without_the_notify(relay_schema, tier_topic):
    """`UnitOfWork.on_outbox_written`: a commit that wrote outbox rows wakes this process's
    relay itself. Here the relay cannot listen (its LISTEN address refuses) and polls only
    every 600 s, so only that wake can bring the row out in time. A commit without outbox
    rows, and one rolled back, wake nobody."""
    relay = OutboxRelay(
        service="probe",
        schema=relay_schema.schema,
        sessions=relay_schema.sessions,
        producer=relay_schema.producer,
        database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none",
        poll_interval=600,
    )
    wakes: list[int] = []
    relay_schema.uow.on_outbox_written(lambda: wakes.append(1))
    relay_schema.uow.on_outbox_written(relay.wake)
    task = asyncio.create_task(relay.run())
    try:
        await eventually(relay_schema.unsent, lambda n: n == 0)
        await asyncio.sleep(0.5)  # idle, polling every 600 s
        async with relay_schema.uow() as tx:
            await tx.session.execute(select(1))
        with pytest.raises(RuntimeError):
            async with relay_schema.uow() as tx:
                tx.emit(TIER_CHANGED, tier_changed("never", 1), key="never")
                raise RuntimeError("rolled back")
        assert wakes == []
        customer = f"K-{uuid.uuid4().hex[:8]}"
        async with relay_schema.uow() as tx:
            tx.emit(TIER_CHANGED, tier_changed(customer, 8), key=customer)
        assert wakes == [1]
        [record] = await tier_topic.wait_for(lambda r: r.key == customer.encode(), timeout=10)
        assert value_of(record)["data"]["total_balance"] == "8"
    finally:
        relay.stop()
        await task


@pytest.mark.parametrize("keep_sent", [timedelta(0), timedelta(hours=1)], ids=["delete", "keep"])
async def test_published_rows_are_deleted_or_kept_marked_sent(relay_schema, tier_topic, keep_sent):
    """By default the relay deletes a batch once the broker acknowledged it; with `keep_sent`
    it marks the batch sent instead, and the rows stay for inspection."""
    customers = await emit_rounds(relay_schema.uow, "D", rounds=4)

    relay = relay_schema.relay(batch_size=5, keep_sent=keep_sent)
    assert [await relay.publish_batch() for _ in range(2)] == [12, 0]
    wanted = {c.encode() for c in customers}
    sequences = totals_by_key(await tier_topic.wait_for(lambda r: r.key in wanted, count=12))
    assert all(seq == list(range(4)) for seq in sequences.values()), sequences
    async with relay_schema.sessions() as session:
        left = list(await session.scalars(select(outbox.c.sent_at)))
    if keep_sent:
        assert len(left) == 12 and None not in left
    else:
        assert left == []


@pytest.mark.parametrize("keep_sent", [timedelta(0), timedelta(days=7)], ids=["delete", "keep"])
async def test_purge_deletes_what_the_retention_has_passed_and_nothing_pending(
    relay_schema, keep_sent
):
    """Inbox ids and fired timers go after the retention, sent outbox rows after
    `keep_sent` (at once when published rows are deleted: rows left from a time they were
    kept); an unsent row or a pending timer stays however old. Fired timers were kept
    forever before: every message, deadline and grace period a schema ever had."""
    async with relay_schema.sessions() as session, session.begin():
        now = await session.scalar(select(func.now()))
        old, recent = now - timedelta(days=8), now - timedelta(hours=1)
        message = {"topic": "t", "key": b"k", "value": b"{}"}
        await session.execute(
            insert(outbox),
            [
                message | {"created_at": old, "sent_at": old},
                message | {"created_at": recent, "sent_at": recent},
                message | {"created_at": old, "sent_at": None},
            ],
        )
        await session.execute(
            insert(inbox),
            [
                {"consumer": "c", "event_id": "old", "processed_at": old},
                {"consumer": "c", "event_id": "recent", "processed_at": recent},
            ],
        )
        await session.execute(
            insert(timers),
            [
                {"kind": "k", "key": "fired-long-ago", "due_at": old, "fired_at": old},
                {"kind": "k", "key": "fired-lately", "due_at": old, "fired_at": recent},
                {"kind": "k", "key": "overdue", "due_at": old, "fired_at": None},
            ],
        )

    relay = relay_schema.relay(retention=timedelta(days=7), keep_sent=keep_sent)
    purged = await relay.purge()

    assert purged == Purged(outbox=1 if keep_sent else 2, inbox=1, timers=1)
    async with relay_schema.sessions() as session:
        sent = await session.scalars(select(outbox.c.sent_at).order_by(outbox.c.id))
        seen = await session.scalars(select(inbox.c.event_id))
        kept = await session.scalars(select(timers.c.key).order_by(timers.c.key))
        assert list(sent) == ([recent, None] if keep_sent else [None])
        assert list(seen) == ["recent"]
        assert list(kept) == ["fired-lately", "overdue"]
