"""Postgres stopped for 10 s under a steady stream of balance events, then restarted on the
same data directory and port: tiering's consumer backs off and resumes, /readyz answers 503
while the database is down, nothing of ours is dead-lettered, every event is claimed once,
and the tier changes are exactly those computed independently from the stream.

The Postgres here is a dedicated embedded cluster (the session's shared one stays up); the
broker is the session's.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from services.tiering.app import SPEC
from shared.contracts.topics import BALANCE_CHANGED, TIER_CHANGED, dead_letter_topic
from shared.db import create_engine
from shared.devstack.broker import free_port
from shared.devstack.postgres import EmbeddedPostgres
from shared.tables import inbox, outbox
from shared.testing.drain import drained
from shared.testing.kafka import TopicWatcher, value_of
from shared.testing.services import KEEP_PUBLISHED, running_service, service_settings
from shared.testing.waiting import eventually
from tests.integration.tiering.test_tier_stream import build_stream, expected_changes
from tests.reliability.outage import ReadinessProbe, steady
from tests.reliability.support import emitted_ids

pytestmark = pytest.mark.integration
OUTAGE_SECONDS = 10.0


async def _reconcile(database_url: str, schema: str, ids: set[str], keys: set[bytes]) -> Any:
    """(our event ids claimed in the inbox, our dead letters, unsent outbox rows)."""
    engine = create_engine(database_url, schema, application_name="test-reconcile")
    try:
        async with engine.connect() as conn:
            claimed = {
                r[0]
                for r in await conn.execute(
                    select(inbox.c.event_id).where(inbox.c.consumer == "tiering.balances")
                )
            }
            dead = await conn.scalar(
                select(func.count())
                .select_from(outbox)
                .where(outbox.c.topic == dead_letter_topic("tiering"), outbox.c.key.in_(keys))
            )
            unsent = await conn.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
            )
    finally:
        await engine.dispose()
    return len(claimed & ids), int(dead or 0), int(unsent or 0)


async def _durable_commits(database_url: str) -> None:
    """Commits acknowledged only once written to the WAL, as in production.

    The embedded cluster runs with `synchronous_commit=off`: an immediate stop (a crash)
    would lose the last acknowledged transactions — inbox claims whose offsets were already
    committed — which is the cluster's setting, not the service's doing.
    """
    engine = create_engine(database_url, "public", application_name="test-setup")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER DATABASE steward SET synchronous_commit = on"))
    finally:
        await engine.dispose()


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """Outside pytest's tmp dirs: a pytest session starting meanwhile (other engineers run
    tests on this machine) resets /tmp/pytest-of-root to 0700, locking out the Postgres
    user mid-test (pg_ctl then fails to read pg_control)."""
    path = Path(tempfile.mkdtemp(prefix="steward-pgdown-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_postgres_down_10s_consumers_back_off_and_resume_losing_nothing(
    infra, kafka_producer, pg_dir
):
    run = uuid.uuid4().hex[:6]
    events = build_stream(run, customers=40)
    expected = expected_changes(events)
    wanted = sum(len(v) for v in expected.values())
    ids = {e["event_id"] for e in events}
    keys = {e["data"]["customer_id"].encode() for e in events}
    postgres = EmbeddedPostgres(pg_dir / "pg", free_port())
    database_url = await asyncio.to_thread(postgres.start)
    await _durable_commits(database_url)
    schema = f"tiering_pgdown_{run}"
    settings = service_settings(
        SPEC,
        infra,
        schema=schema,
        database_url=database_url,
        consumer_batch_size=20,
        **KEEP_PUBLISHED,
    )
    changes = await TopicWatcher(infra.bootstrap_servers, TIER_CHANGED).start()
    try:
        async with running_service(SPEC, settings) as svc:
            probe = ReadinessProbe(svc.http).start()
            try:
                feeding = asyncio.create_task(steady(kafka_producer, BALANCE_CHANGED, events, 16))

                async def written() -> int:
                    return len(await emitted_ids(database_url, schema, TIER_CHANGED))

                await eventually(written, lambda n: n >= 20, timeout=60)  # flowing
                before = await written()
                down_at = time.monotonic()
                await asyncio.to_thread(postgres.stop, "immediate")
                await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself: nothing to await
                up_at = time.monotonic()
                await asyncio.to_thread(postgres.start)
                await feeding
                during = probe.between(down_at + 1.0, up_at)  # 1 s for the probe to notice

                async def settled() -> Any:
                    return await _reconcile(database_url, schema, ids, keys)

                # An offset committed for an event never processed would leave it unclaimed.
                claimed, dead, unsent = await eventually(
                    settled, lambda c: c[0] == len(ids) and c[2] == 0, timeout=60
                )
                await drained(svc.runtime)
                mine = await emitted_ids(database_url, schema, TIER_CHANGED)
                await changes.wait_for(lambda r: value_of(r)["event_id"] in mine, count=len(mine))
                await eventually(lambda: svc.http.get("/readyz"), lambda r: r.status_code == 200)
                tiers = {
                    customer: (
                        await svc.http.get(
                            f"/customers/{customer}/tier", headers=svc.token("admin")
                        )
                    ).json()
                    for customer in expected
                }
                _, dead, unsent = await _reconcile(database_url, schema, ids, keys)
                alive = all(not t.done() for t in svc.runtime._tasks)
            finally:
                await probe.stop()
    finally:
        await changes.stop()
        await asyncio.to_thread(postgres.stop, "immediate")

    records = changes.matching(lambda r: r.key in keys and value_of(r)["event_id"] in mine)
    by_id: dict[str, dict[str, Any]] = {}
    for record in records:
        by_id.setdefault(value_of(record)["event_id"], value_of(record)["data"])
    republished = sum(n - 1 for n in Counter(value_of(r)["event_id"] for r in records).values())
    actual: dict[str, list[tuple[Any, str, str]]] = {}
    for data in by_id.values():
        actual.setdefault(data["customer_id"], []).append(
            (data["previous_tier"], data["tier"], data["total_balance"])
        )
    print(
        f"\npostgres outage: {len(events)} events, {claimed} claimed; {wanted} changes "
        f"expected, {len(by_id)} distinct observed ({before} before the outage), "
        f"{republished} republished copies (same event_id), "
        f"{sum(len(actual.get(c, [])) > len(v) for c, v in expected.items())} customers with "
        f"extra changes, {len(expected) - len(actual)} with none; {dead} dead letters, "
        f"{unsent} unsent; readyz during outage: {Counter(during)}"
    )
    assert claimed == len(events)
    assert dead == 0
    assert unsent == 0
    assert alive, "a background loop of the service ended"
    assert during and set(during) == {503}, during
    assert actual == expected
    assert len(by_id) == wanted
    assert {c: t["tier"] for c, t in tiers.items()} == {c: h[-1][1] for c, h in expected.items()}
