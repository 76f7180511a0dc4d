"""What the consumer keeps of a record it cannot process, and which offsets it commits."""

from __future__ import annotations

import json
from typing import Any, cast

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from shared.messaging.consumer import ConsumerRunner, Subscription
from shared.messaging.dead_letter import MAX_COPY, dead_letter_value, dedupe_id

EVENT_ID = "8A0C5A3E-6F0E-4F7E-9A57-3C1F8A2B9D10"


def _record(value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("bank.postings", 3, 41, 0, 0, b"C1", value, None, 0, len(value), [])


def test_a_bad_records_inbox_id_is_its_uuid_or_else_its_position():
    assert dedupe_id(_record(json.dumps({"event_id": EVENT_ID}).encode())) == EVENT_ID.lower()
    position = "bank.postings:3:41"
    # What the inbox cannot store (a NUL, a lone surrogate) or is no id at all.
    for value in (
        json.dumps({"event_id": "x\u0000y"}).encode(),
        b'{"event_id": "\\ud800"}',
        json.dumps({"event_id": "evt-1"}).encode(),
        json.dumps({"event_id": 12345}).encode(),
        json.dumps(["event_id"]).encode(),
        b"\xff not json",
        b"",
    ):
        assert dedupe_id(_record(value)) == position, value


def test_a_dead_letter_keeps_the_value_up_to_900000_bytes():
    small = b"x" * MAX_COPY
    assert dead_letter_value(small) == (small, [])
    cut, headers = dead_letter_value(small + b"yz")
    assert cut == small
    assert headers == [("dlq.truncated_from", str(MAX_COPY + 2))]


class _Group:
    """The consumer's group client: what it owns now, what it was asked to commit."""

    def __init__(self, owned: set[TopicPartition]) -> None:
        self.owned = owned
        self.committed: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.owned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if any(tp not in self.owned for tp in offsets):
            raise AssertionError("aiokafka raises IllegalStateError: partition not assigned")
        self.committed.append(offsets)


async def _handler(tx: Any, events: Any) -> None:
    raise AssertionError("not called")


async def test_offsets_of_partitions_a_rebalance_took_are_not_committed():
    kept, taken = TopicPartition("bank.postings", 0), TopicPartition("bank.postings", 1)
    runner = ConsumerRunner(
        service="commit-test",
        subscription=Subscription("postings", ("bank.postings",), _handler),
        uow=cast(Any, None),
        bootstrap_servers="unused:9092",
    )
    group = _Group({kept})
    runner._kafka = cast(Any, group)
    runner._processed = {kept: 10, taken: 7}  # the batch finished after the rebalance
    await runner.commit_processed()
    assert group.committed == [{kept: 10}]

    group.owned = set()  # mid-rebalance: nothing owned, nothing to commit
    runner._processed = {kept: 12}
    await runner.commit_processed()
    assert group.committed == [{kept: 10}]
