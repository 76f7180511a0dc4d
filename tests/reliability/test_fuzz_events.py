"""Property-based bad input on every consumed topic: each record ends dead-lettered (with a
reason) or processed — never both, never neither — for every consumer of its topic, and the
consumers keep going (a good event after the fuzz is processed by all of them)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from shared.contracts.topics import TOPICS, dead_letter_topic
from shared.tables import inbox
from shared.testing.drain import drained
from shared.testing.kafka import TopicWatcher, header, make_event
from shared.testing.services import RunningService
from shared.testing.waiting import eventually
from tests.reliability.samples import DATETIMES, ENUMS, MONEY, sample

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("STEWARD_FUZZ_EXAMPLES", "160"))
KINDS = (
    "valid", "extra_fields", "random_json", "not_json", "wrong_type", "float_money",
    "huge_string", "unknown_enum", "naive_datetime", "extreme_datetime", "missing_field",
    "bad_envelope",
)  # fmt: skip
MUST_DEAD_LETTER = {
    "random_json", "not_json", "float_money", "naive_datetime", "extreme_datetime",
    "missing_field",
}  # fmt: skip
MUST_PROCESS = {"valid", "extra_fields"}
NAIVE = "2026-11-22T13:05:00"  # no offset

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@dataclass
class Fuzzed:
    topic: str
    kind: str
    key: str
    value: bytes
    event_id: str | None
    partition: int = -1
    offset: int = -1


def _mutate(draw: Callable[[st.SearchStrategy[Any]], Any], topic: str, key: str) -> Fuzzed:
    data = sample(topic, key)
    kind = draw(st.sampled_from(KINDS))
    envelope = make_event(topic, data)
    fields = sorted(data)
    if kind == "random_json":
        value = json.dumps(draw(json_values.filter(lambda v: not isinstance(v, dict)))).encode()
        return Fuzzed(topic, kind, key, value, None)
    if kind == "not_json":
        return Fuzzed(topic, kind, key, b"\xff" + draw(st.binary(max_size=40)), None)
    if kind == "extra_fields":
        data[f"zz_{draw(st.text(alphabet='abc', max_size=5))}"] = draw(json_values)
    elif kind == "wrong_type":
        field = draw(st.sampled_from(fields))
        data[field] = draw(json_values.filter(lambda v: type(v) is not type(data[field])))
    elif kind == "float_money":
        money = [f for f in fields if f in MONEY]
        if not money:
            kind = "naive_datetime"
        else:
            data[draw(st.sampled_from(money))] = draw(
                st.floats(allow_nan=False, allow_infinity=False)
            )
    if kind == "huge_string":
        texts = [f for f in fields if isinstance(data[f], str)]
        data[draw(st.sampled_from(texts))] = "x" * draw(st.integers(10_000, 300_000))
    elif kind == "unknown_enum":
        enums = [f for f in fields if f in ENUMS] or fields
        data[draw(st.sampled_from(enums))] = draw(st.text(min_size=1, max_size=12))
    elif kind == "naive_datetime":
        stamps = [f for f in fields if f in DATETIMES]
        if stamps:
            data[draw(st.sampled_from(stamps))] = NAIVE
        else:
            envelope["occurred_at"] = NAIVE
    elif kind == "extreme_datetime":  # stored, it would not read back near year 1 or 9999
        stamp = draw(st.sampled_from(["0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-15:00"]))
        stamps = [f for f in fields if f in DATETIMES]
        if stamps:
            data[draw(st.sampled_from(stamps))] = stamp
        else:
            envelope["occurred_at"] = stamp
    elif kind == "missing_field":
        required = TOPICS[topic].payload.model_json_schema().get("required", [])
        del data[draw(st.sampled_from(sorted(required)))]
    elif kind == "bad_envelope":
        name, bad = draw(
            st.sampled_from(
                [("event_type", "Nope"), ("schema_version", 99), ("occurred_at", "yesterday"),
                 ("event_id", 12345), ("data", None), ("producer", None)]
            )
        )  # fmt: skip
        envelope[name] = bad
    value = json.dumps(envelope).encode()
    event_id = envelope["event_id"] if isinstance(envelope["event_id"], str) else None
    return Fuzzed(topic, kind, key, value, event_id)


def generate(topics: list[str], run: str) -> list[Fuzzed]:
    """EXAMPLES records drawn by hypothesis over topics and kinds of damage."""
    drawn: list[Fuzzed] = []

    @settings(
        max_examples=EXAMPLES,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def draw(data: st.DataObject) -> None:
        topic = data.draw(st.sampled_from(topics))
        drawn.append(_mutate(data.draw, topic, f"FZ-{run}-{len(drawn)}"))

    draw()
    return drawn


def subscribers(fleet: dict[str, RunningService]) -> dict[str, list[tuple[str, str]]]:
    """topic → (service, consumer name) of every consumer of the fleet."""
    found: dict[str, list[tuple[str, str]]] = {}
    for name, svc in fleet.items():
        for consumer in svc.runtime.consumers:
            for topic in consumer.subscription.topics:
                found.setdefault(topic, []).append((name, consumer.consumer_name))
    return found


async def _inbox_ids(svc: RunningService, consumer: str, ids: list[str]) -> set[str]:
    async with svc.runtime.sessions() as session:
        rows = await session.execute(
            select(inbox.c.event_id).where(inbox.c.consumer == consumer, inbox.c.event_id.in_(ids))
        )
        return {r[0] for r in rows}


async def test_every_fuzzed_record_is_dead_lettered_or_processed(fleet, kafka_producer):
    run = uuid.uuid4().hex[:8]
    consumed = subscribers(fleet)
    topics = sorted(consumed)
    assert len(topics) == 11
    records = generate(topics, run)
    # A good event per topic at the very end: every consumer must still be alive to take it.
    for n, topic in enumerate(topics):
        key = f"FZ-{run}-tail-{n}"
        event = make_event(topic, sample(topic, key))
        records.append(Fuzzed(topic, "valid", key, json.dumps(event).encode(), event["event_id"]))
    bootstrap = next(iter(fleet.values())).runtime.settings.kafka_bootstrap_servers
    letters = {
        name: await TopicWatcher(bootstrap, dead_letter_topic(name)).start() for name in fleet
    }
    try:
        for r in records:
            meta = await kafka_producer.send_and_wait(r.topic, r.value, key=r.key.encode())
            r.partition, r.offset = meta.partition, meta.offset
        for svc in fleet.values():
            await drained(svc.runtime, timeout=90)

        ours = {r.key.encode() for r in records}
        expected = sum(len(consumed[r.topic]) for r in records)

        def outcomes() -> dict[tuple[str, str, int, int], list[str]]:
            """(consumer, topic, partition, offset) → the dead letters it produced."""
            found: dict[tuple[str, str, int, int], list[str]] = {}
            for watcher in letters.values():
                for d in watcher.matching(lambda rec: rec.key in ours):
                    position = (
                        str(header(d, "dlq.consumer")),
                        str(header(d, "dlq.original_topic")),
                        int(header(d, "dlq.partition") or -1),
                        int(header(d, "dlq.offset") or -1),
                    )
                    found.setdefault(position, []).append(
                        f"{header(d, 'dlq.error_type')}: {header(d, 'dlq.error')}"
                    )
            return found

        async def reconcile() -> tuple[dict[str, dict[str, int]], list[Any]]:
            return await _reconcile(fleet, consumed, records, outcomes())

        # Dead letters are on their topics once drained; the watchers may still be reading.
        report, wrong = await eventually(reconcile, lambda result: not result[1], timeout=15)
        print(f"\nfuzz: {len(records)} records, {expected} consumer outcomes: {report}")
        assert wrong == []
        assert sum(sum(t.values()) for t in report.values()) == expected
    finally:
        for watcher in letters.values():
            await watcher.stop()


async def _reconcile(
    fleet: dict[str, RunningService],
    consumed: dict[str, list[tuple[str, str]]],
    records: list[Fuzzed],
    letters_by_position: dict[tuple[str, str, int, int], list[str]],
) -> tuple[dict[str, dict[str, int]], list[Any]]:
    """Outcome tallies per kind of damage, and every record whose outcome is wrong."""
    report: dict[str, dict[str, int]] = {}
    wrong: list[Any] = []
    processed_by: dict[str, set[str]] = {}
    for topic, consumers in consumed.items():
        for service, consumer in consumers:
            ids = [r.event_id for r in records if r.topic == topic and r.event_id]
            processed_by[consumer + topic] = await _inbox_ids(fleet[service], consumer, ids)
    for r in records:
        for _, consumer in consumed[r.topic]:
            dead = letters_by_position.get((consumer, r.topic, r.partition, r.offset), [])
            processed = r.event_id in processed_by[consumer + r.topic] and not dead
            outcome = "dead_lettered" if dead else "processed" if processed else "lost"
            tally = report.setdefault(r.kind, {})
            tally[outcome] = tally.get(outcome, 0) + 1
            if (
                outcome == "lost"
                or len(dead) > 1
                or (dead and not all(": " in d and len(d) > 4 for d in dead))
                or (r.kind in MUST_DEAD_LETTER and outcome != "dead_lettered")
                or (r.kind in MUST_PROCESS and outcome != "processed")
            ):
                wrong.append((consumer, r.topic, r.kind, outcome, dead, r.value[:300]))
    return report, wrong
