"""Consumer runner on a real broker and Postgres: inbox, dead letters, retries, offsets."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import distinct, func, select

from shared.bulk import APPEND_INLINE_ROWS
from shared.contracts.topics import BALANCE_CHANGED, OPS_ALERTS
from shared.messaging.outbox import MAX_EVENT_BYTES
from shared.testing.kafka import (
    TopicWatcher,
    committed_offset,
    header,
    make_event,
    publish,
    value_of,
)
from shared.testing.services import running_service, service_settings
from shared.testing.waiting import eventually
from tests.integration.conftest import make_probe_schema
from tests.integration.probe import ProbeHandler, effects, probe_spec

pytestmark = pytest.mark.integration

DLQ = "probe.dead-letter.v1"


def balance_event(customer: str, txn_id: str, **data: Any) -> dict[str, Any]:
    return make_event(
        BALANCE_CHANGED,
        {
            "customer_id": customer,
            "account_id": f"{customer}-01",
            "currency": "CNY",
            "balance": "100.00",
            "delta": "100.00",
            "txn_id": txn_id,
        }
        | data,
    )


async def effects_of(probe, customer: str) -> list[str]:
    async with probe.runtime.sessions() as session:
        rows = await session.scalars(
            select(effects.c.txn_id).where(effects.c.customer_id == customer)
        )
        return list(rows)


async def wait_for_effects(probe, customer: str, count: int, timeout: float = 45) -> list[str]:
    return await eventually(
        lambda: effects_of(probe, customer), lambda found: len(found) >= count, timeout=timeout
    )


@pytest.fixture
async def dead_letters(infra):
    from shared.devstack.topics import TopicDefinition, create_topics

    await create_topics(infra.bootstrap_servers, [TopicDefinition(DLQ, 1, 1, 86400000)])
    watcher = await TopicWatcher(infra.bootstrap_servers, DLQ).start()
    yield watcher
    await watcher.stop()


@pytest.fixture
async def alerts(infra):
    watcher = await TopicWatcher(infra.bootstrap_servers, OPS_ALERTS).start()
    yield watcher
    await watcher.stop()


def customer_id() -> str:
    return f"P-{uuid.uuid4().hex[:10]}"


async def test_duplicate_event_has_no_second_effect(probe, kafka_producer):
    customer = customer_id()
    event = balance_event(customer, "once")
    await publish(kafka_producer, BALANCE_CHANGED, event)
    await publish(kafka_producer, BALANCE_CHANGED, event)
    await publish(kafka_producer, BALANCE_CHANGED, balance_event(customer, "marker"))
    # The marker comes after both copies on the same partition: once it is applied,
    # both copies of the event have been consumed.
    found = await wait_for_effects(probe, customer, 2)
    assert sorted(found) == ["marker", "once"]


def consumed(outcome: str) -> float:
    labels = {"service": "probe", "topic": BALANCE_CHANGED, "outcome": outcome}
    return REGISTRY.get_sample_value("steward_events_consumed_total", labels) or 0.0


async def test_events_consumed_are_counted_once_each_by_outcome(probe, kafka_producer):
    before = {o: consumed(o) for o in ("processed", "duplicate", "dead_lettered")}
    customer = customer_id()
    event = balance_event(customer, "once")
    await publish(kafka_producer, BALANCE_CHANGED, event)
    await publish(kafka_producer, BALANCE_CHANGED, event)
    await publish(kafka_producer, BALANCE_CHANGED, b"{not json", key=customer)
    await publish(kafka_producer, BALANCE_CHANGED, balance_event(customer, "marker"))
    await wait_for_effects(probe, customer, 2)

    counted = await eventually(
        lambda: _deltas(before), lambda d: d["processed"] >= 2 and d["dead_lettered"] >= 1
    )
    assert counted == {"processed": 2, "duplicate": 1, "dead_lettered": 1}


@pytest.mark.parametrize("copies", [1, APPEND_INLINE_ROWS + 1])
async def test_a_copy_of_an_event_processed_earlier_fails_its_commit_and_has_no_effect(
    probe, probe_handler, kafka_producer, copies
):
    """Past a batch without duplicates, the inbox ids are written with the commit (a few in
    its statement, more copied): a copy of an event processed in an earlier batch is handled
    in a transaction that cannot commit, then dropped when the batch runs again."""
    customer = customer_id()
    copied = [f"{customer}:copy:{n}" for n in range(copies)]
    events = [balance_event(customer, txn) for txn in copied]
    for event in [*events, balance_event(customer, "first marker")]:
        await publish(kafka_producer, BALANCE_CHANGED, event)
    await wait_for_effects(probe, customer, copies + 1)
    before = {o: consumed(o) for o in ("processed", "duplicate", "dead_lettered")}

    for event in [*events, balance_event(customer, "second marker")]:
        await publish(kafka_producer, BALANCE_CHANGED, event)
    found = await wait_for_effects(probe, customer, copies + 2)

    assert sorted(found) == sorted([*copied, "first marker", "second marker"])
    counted = await eventually(lambda: _deltas(before), lambda d: d["duplicate"] >= copies)
    assert (counted["duplicate"], counted["dead_lettered"]) == (copies, 0)
    # Handled again (in the transaction the inbox refused), but never a third time.
    assert max(probe_handler.attempts[txn] for txn in copied) == 2


async def _deltas(before: dict[str, float]) -> dict[str, float]:
    return {o: consumed(o) - n for o, n in before.items()}


async def test_poison_message_is_dead_lettered_and_the_next_is_processed(
    probe, kafka_producer, dead_letters, alerts
):
    customer = customer_id()
    await publish(kafka_producer, BALANCE_CHANGED, b"{not json", key=customer)
    bad_amount = balance_event(customer, "float", balance=100.5)
    await publish(kafka_producer, BALANCE_CHANGED, bad_amount)
    await publish(kafka_producer, BALANCE_CHANGED, balance_event(customer, "good"))

    assert await wait_for_effects(probe, customer, 1) == ["good"]
    letters = await dead_letters.wait_for(lambda r: r.key == customer.encode(), count=2)
    by_type = {header(r, "dlq.error_type"): r for r in letters}
    assert set(by_type) == {"not_json", "schema_invalid"}
    assert by_type["not_json"].value == b"{not json"  # the original value, untouched
    schema_letter = by_type["schema_invalid"]
    assert "data.balance" in (header(schema_letter, "dlq.error") or "")
    assert header(schema_letter, "dlq.original_topic") == BALANCE_CHANGED
    assert header(schema_letter, "dlq.consumer") == "probe.events"
    for name in ("dlq.partition", "dlq.offset", "dlq.at"):
        assert header(schema_letter, name)
    await alerts.wait_for(
        lambda r: (
            value_of(r)["data"]["kind"] == "dead_letter"
            and value_of(r)["data"]["details"]["error_type"] == "schema_invalid"
            and value_of(r)["data"]["service"] == "probe"
        )
    )


async def test_rejected_event_is_dead_lettered_without_losing_its_batch(
    probe, kafka_producer, dead_letters
):
    customer = customer_id()
    for txn in ("before", "reject:this", "after"):
        await publish(kafka_producer, BALANCE_CHANGED, balance_event(customer, txn))
    found = await wait_for_effects(probe, customer, 2)
    assert sorted(found) == ["after", "before"]
    [letter] = await dead_letters.wait_for(lambda r: r.key == customer.encode())
    assert header(letter, "dlq.error_type") == "probe_rejected"


async def test_handler_bug_dead_letters_only_the_culprit(probe, kafka_producer, dead_letters):
    customer = customer_id()
    for txn in ("a", "crash:bug", "b"):
        await publish(kafka_producer, BALANCE_CHANGED, balance_event(customer, txn))
    found = await wait_for_effects(probe, customer, 2)
    assert sorted(found) == ["a", "b"]
    [letter] = await dead_letters.wait_for(lambda r: r.key == customer.encode())
    assert header(letter, "dlq.error_type") == "handler_error"
    assert "RuntimeError" in (header(letter, "dlq.error") or "")


async def test_an_event_too_large_for_a_record_dead_letters_its_cause(
    probe, kafka_producer, dead_letters
):
    customer = customer_id()
    for txn in ("a", "oversized:1", "b"):
        await publish(kafka_producer, BALANCE_CHANGED, balance_event(customer, txn))
    found = await wait_for_effects(probe, customer, 2)
    assert sorted(found) == ["a", "b"]
    [letter] = await dead_letters.wait_for(lambda r: r.key == customer.encode())
    assert header(letter, "dlq.error_type") == "handler_error"
    error = header(letter, "dlq.error") or ""
    assert error.startswith("EventTooLarge: profile.callback-due.v1: the event is 1,100,")
    assert error.endswith(f"bytes, over {MAX_EVENT_BYTES:,}")


async def test_transient_fault_is_retried_without_commit_then_succeeds_once(
    infra, probe, probe_handler, kafka_producer, dead_letters
):
    customer = customer_id()
    txn = f"transient:{customer}"
    probe_handler.failing.add(txn)
    await publish(kafka_producer, BALANCE_CHANGED, balance_event(customer, txn))

    async def attempts() -> int:
        return probe_handler.attempts.get(txn, 0)

    await eventually(attempts, lambda n: n >= 3)
    # Still failing: nothing applied, and the group's offsets do not cover the event.
    assert await effects_of(probe, customer) == []
    watcher = await TopicWatcher(infra.bootstrap_servers, BALANCE_CHANGED).start(
        from_beginning=True
    )
    try:
        [record] = await watcher.wait_for(lambda r: r.key == customer.encode())
    finally:
        await watcher.stop()

    def committed():
        return committed_offset(
            infra.bootstrap_servers,
            probe.runtime.consumers[0].group_id,
            record.topic,
            record.partition,
        )

    assert await committed() <= record.offset

    probe_handler.failing.discard(txn)
    assert await wait_for_effects(probe, customer, 1) == [txn]
    await eventually(committed, lambda offset: offset > record.offset)
    assert not dead_letters.matching(lambda r: r.key == customer.encode())
    assert await effects_of(probe, customer) == [txn]  # exactly once


async def _transactions_of(service, customer: str) -> int:
    """How many transactions applied the customer's events (now() is per transaction)."""
    async with service.runtime.sessions() as session:
        return int(
            await session.scalar(
                select(func.count(distinct(effects.c.at))).where(effects.c.customer_id == customer)
            )
            or 0
        )


async def _trickle(kafka_producer, customer: str, count: int) -> float:
    """`count` events of one customer (one partition), one every 100 ms; returns how many
    seconds publishing them took."""
    started = time.monotonic()
    for n in range(count):
        await publish(kafka_producer, BALANCE_CHANGED, balance_event(customer, f"t{n}"))
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_a_paced_consumer_takes_a_trickle_in_fewer_batches(infra, probe, kafka_producer):
    """CONSUMER_PACE_MS: caught up, a consumer fetches at most once a pace, so a steady
    trickle arrives in fewer, larger batches; every event is still processed once. The
    package's probe (no pace) is the control: it takes the same trickle nearly one by one."""
    spec = probe_spec(ProbeHandler())
    schema = infra.new_schema("paced")
    await make_probe_schema(infra, schema)
    pace = 1.0
    settings = service_settings(spec, infra, schema=schema, consumer_pace_ms=pace * 1000)
    async with running_service(spec, settings, migrate=False) as paced:
        customer = customer_id()
        spread = await _trickle(kafka_producer, customer, 10)
        for service in (paced, probe):
            assert sorted(await wait_for_effects(service, customer, 10)) == sorted(
                f"t{n}" for n in range(10)
            )
        # Over about a second the paced consumer takes a batch at the first event and one
        # a pace later (one more for each further pace the publishing took, and one for a
        # batch cut where a pace ends); the unpaced one takes them about as they arrive.
        assert await _transactions_of(paced, customer) <= 2 + int(spread / pace)
        assert await _transactions_of(probe, customer) >= 5
