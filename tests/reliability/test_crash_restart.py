"""A tiering process killed with SIGKILL mid-stream and restarted: the tier changes on the
topic and the tiers in the database are exactly the expected ones — none lost, none doubled."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from shared.contracts.topics import BALANCE_CHANGED, TIER_CHANGED
from shared.db import create_engine
from shared.tables import inbox, outbox
from shared.testing.backlog import skip_backlog
from shared.testing.kafka import TopicWatcher, publish, value_of
from shared.testing.processes import ServiceProcess
from shared.testing.services import KEEP_PUBLISHED, TEST_JWT_SECRET, RunningService
from shared.testing.waiting import eventually
from tests.integration.tiering.test_tier_stream import build_stream, expected_changes
from tests.reliability.support import emitted_ids

pytestmark = pytest.mark.integration


async def _counts(database_url: str, schema: str, ids: list[str]) -> tuple[int, int]:
    """(inbox ids among `ids`, unsent outbox rows) in the service's schema."""
    engine = create_engine(database_url, schema, application_name="test-reconcile")
    try:
        async with engine.connect() as conn:
            claimed = await conn.scalar(
                select(func.count())
                .select_from(inbox)
                .where(inbox.c.consumer == "tiering.balances", inbox.c.event_id.in_(ids))
            )
            unsent = await conn.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
            )
    finally:
        await engine.dispose()
    return int(claimed or 0), int(unsent or 0)


async def test_sigkill_mid_stream_then_restart_yields_exactly_the_expected_changes(
    infra, kafka_producer, tmp_path
):
    run = uuid.uuid4().hex[:6]
    events = build_stream(run, customers=60)
    expected = expected_changes(events)
    wanted = sum(len(v) for v in expected.values())
    schema = infra.new_schema("tiering_kill")
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "DATABASE_URL": infra.database_url,
        "STEWARD_JWT_SECRET": TEST_JWT_SECRET,
        "SCHEMA_NAME": schema,
        "CONSUMER_BATCH_SIZE": "20",  # small batches: the kill lands between commits
        "OUTBOX_KEEP_SENT_HOURS": str(KEEP_PUBLISHED["outbox_keep_sent_hours"]),
    }
    ours = {e["data"]["customer_id"].encode() for e in events}
    changes = await TopicWatcher(infra.bootstrap_servers, TIER_CHANGED).start()
    # Start at "now": with batches of 20, replaying the session's backlog would take minutes.
    await skip_backlog(infra.bootstrap_servers, f"tiering.balances@{schema}", [BALANCE_CHANGED])
    first = ServiceProcess("tiering", env, tmp_path / "first.log").start()
    second = ServiceProcess("tiering", env, tmp_path / "second.log")
    try:
        await first.wait_ready()

        async def stream() -> None:
            # Paced (about 5 s in all): published at once, the postings were all processed
            # before the first look at the outbox once a batch took fewer round trips.
            for event in events:
                await publish(kafka_producer, BALANCE_CHANGED, event)
                await asyncio.sleep(0.01)

        publishing = asyncio.create_task(stream())

        # Kill once some, but not all, changes are out: mid-stream, postings still arriving.
        async def written() -> int:
            return len(await emitted_ids(infra.database_url, schema, TIER_CHANGED))

        await eventually(written, lambda n: n >= max(1, wanted // 4), timeout=60)
        first.kill()
        seen_at_kill = await written()
        assert seen_at_kill < wanted, "the kill came too late to test anything"
        await publishing

        second.start()
        await second.wait_ready()
        mine: set[str] = set()

        async def emitted() -> int:
            mine.update(await emitted_ids(infra.database_url, schema, TIER_CHANGED))
            return len(changes.matching(lambda r: value_of(r)["event_id"] in mine))

        await eventually(emitted, lambda n: n >= wanted, timeout=90)

        async def settled() -> tuple[int, int]:
            return await _counts(infra.database_url, schema, [e["event_id"] for e in events])

        try:
            await eventually(settled, lambda c: c == (len(events), 0), timeout=60)
        except AssertionError:
            engine = create_engine(infra.database_url, schema, application_name="diag")
            async with engine.connect() as conn:
                got = {r[0] for r in await conn.execute(select(inbox.c.event_id))}
            await engine.dispose()
            missing = [e for e in events if e["event_id"] not in got]
            print("MISSING", len(events), [(m["event_id"], m["data"]) for m in missing][:3])
            raise
        await changes.caught_up()  # a straggler republished by the relay is seen by now
        mine = await emitted_ids(infra.database_url, schema, TIER_CHANGED)
        records = changes.matching(lambda r: r.key in ours and value_of(r)["event_id"] in mine)
        async with httpx.AsyncClient(base_url=second.url) as client:
            staff = RunningService.token("staff", employee_id="E1")
            tiers = {
                customer: (await client.get(f"/customers/{customer}/tier", headers=staff)).json()
                for customer in expected
            }
    finally:
        first.stop()
        second.stop()
        await changes.stop()

    by_id: dict[str, dict[str, Any]] = {}
    for record in records:
        event = value_of(record)
        by_id.setdefault(event["event_id"], event["data"])
    republished = sum(n - 1 for n in Counter(value_of(r)["event_id"] for r in records).values())
    actual: dict[str, list[tuple[Any, str, str]]] = {}
    for data in by_id.values():
        actual.setdefault(data["customer_id"], []).append(
            (data["previous_tier"], data["tier"], data["total_balance"])
        )
    print(
        f"\ncrash: {len(events)} events, {wanted} changes expected, {len(by_id)} distinct "
        f"observed, {republished} republished copies (same event_id), "
        f"{seen_at_kill} written at kill"
    )
    assert actual == expected
    assert len(by_id) == wanted
    assert {c: t["tier"] for c, t in tiers.items()} == {c: h[-1][1] for c, h in expected.items()}
