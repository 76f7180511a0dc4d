"""The broker unreachable for 10 s: an API write during the outage succeeds and its events
wait in the outbox, /readyz answers 503 meanwhile, and after recovery every outbox row is on
the topic exactly once, the outbox is empty and the consumer resumes where it stopped.

The API write is `PUT /tiers/policy` (admin): tiering's only write, it stores the policy
and schedules the re-evaluation sweep, which emits a TierChanged per customer whose tier
the new thresholds change — all in the database, with the broker gone.

The outage is a cut network link (tests/reliability/outage.py: a proxy the broker
advertises as its address, closed for the outage): the embedded broker keeps everything in
memory only, so stopping it would lose its records and committed offsets — unlike a real
cluster, whose outage the service must ride out with both intact. The topic is then read
whole: every TierChanged the service ever wrote is on it, once per event id (a republished
copy with the same id would be counted and reported), with no outbox row left unsent.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select

from services.tiering.app import SPEC
from shared.contracts.topics import BALANCE_CHANGED, TIER_CHANGED
from shared.devstack.broker import EmbeddedBroker, free_port
from shared.devstack.topics import create_topics
from shared.tables import inbox, outbox
from shared.testing.drain import unsent
from shared.testing.kafka import TopicWatcher, count_records, make_event, publish, value_of
from shared.testing.services import (
    KEEP_PUBLISHED,
    RunningService,
    running_service,
    service_settings,
)
from shared.testing.waiting import eventually
from tests.reliability.outage import NetworkLink, ReadinessProbe

pytestmark = pytest.mark.integration
CUSTOMERS = 20  # half at 40 000 CNY (ordinary → potential under the new policy), half at 20 000
OUTAGE_SECONDS = 10.0
LOWER_POTENTIAL = {"potential_from": "30000.00", "quality_from": "500000.00",
                   "high_end_from": "3000000.00"}  # fmt: skip


def balance(customer: str, amount: str, seq: int) -> dict[str, Any]:
    return make_event(
        BALANCE_CHANGED,
        {"customer_id": customer, "account_id": f"{customer}-1", "currency": "CNY",
         "balance": amount, "delta": "0.00", "txn_id": f"{customer}-{seq}", "account_seq": seq},
    )  # fmt: skip


@pytest.fixture
async def link() -> AsyncIterator[NetworkLink]:
    link = await NetworkLink(free_port(), free_port()).restore()
    yield link
    await link.cut()


@pytest.fixture
async def broker(tmp_path, link: NetworkLink) -> AsyncIterator[EmbeddedBroker]:
    """A broker of its own, reached only through `link`."""
    embedded = EmbeddedBroker(link.target_port, tmp_path / "broker.log", advertised_port=link.port)
    await asyncio.to_thread(embedded.start)
    await create_topics(embedded.bootstrap_servers)
    yield embedded
    await asyncio.to_thread(embedded.stop)


async def _producer(bootstrap: str) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    return producer


async def _changes_in_outbox(svc: RunningService, keys: set[bytes]) -> list[Any]:
    """Our TierChanged outbox rows: (event_id, data, created_at, sent_at)."""
    async with svc.runtime.sessions() as session:
        rows = await session.execute(
            select(outbox.c.value, outbox.c.created_at, outbox.c.sent_at)
            .where(outbox.c.topic == TIER_CHANGED, outbox.c.key.in_(keys))
            .order_by(outbox.c.id)
        )
        return [
            (json.loads(r.value)["event_id"], json.loads(r.value)["data"], r.created_at, r.sent_at)
            for r in rows
        ]


async def test_broker_down_10s_api_writes_land_in_outbox_and_are_delivered_after(
    infra, broker, link
):
    run = uuid.uuid4().hex[:6]
    customers = [f"B{run}-{n:02d}" for n in range(CUSTOMERS)]
    rich, modest = customers[: CUSTOMERS // 2], customers[CUSTOMERS // 2 :]
    keys = {c.encode() for c in customers}
    settings = service_settings(
        SPEC, infra, schema=infra.new_schema("tiering_brokerdown"),
        kafka_bootstrap_servers=broker.bootstrap_servers, **KEEP_PUBLISHED,
    )  # fmt: skip
    admin = RunningService.token("admin")
    async with running_service(SPEC, settings) as svc:
        # Before: every customer's initial tier (ordinary), published and on the topic.
        producer = await _producer(broker.bootstrap_servers)
        try:
            for c in customers:
                await publish(
                    producer,
                    BALANCE_CHANGED,
                    balance(c, "40000.00" if c in rich else "20000.00", 1),
                )
        finally:
            await producer.stop()
        await eventually(
            lambda: _changes_in_outbox(svc, keys),
            lambda rows: len(rows) == CUSTOMERS and all(r[3] for r in rows),
        )
        before = len(await _changes_in_outbox(svc, keys))

        probe = ReadinessProbe(svc.http).start()
        try:
            await link.cut()
            stopped_at = time.monotonic()
            await eventually(lambda: svc.http.get("/readyz"), lambda r: r.status_code == 503)
            # The API stays in a load balancer's rotation: it needs only the database.
            assert (await svc.http.get("/readyz/http")).status_code == 200
            response = await svc.http.put("/tiers/policy", json=LOWER_POTENTIAL, headers=admin)
            assert response.status_code == 200, response.text
            written_during = await eventually(
                lambda: _changes_in_outbox(svc, keys), lambda rows: len(rows) == before + len(rich)
            )
            waiting = sum(1 for r in written_during if r[3] is None)  # unsent, broker down
            await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
            up_at = time.monotonic()
            await link.restore()
            during = probe.between(stopped_at + 0.5, up_at)  # 0.5 s to notice
            await eventually(lambda: unsent(svc.runtime), lambda n: n == 0, timeout=60)
            await eventually(
                lambda: svc.http.get("/readyz"), lambda r: r.status_code == 200, timeout=60
            )
        finally:
            await probe.stop()

        # After: the consumer resumes — five modest customers reach quality.
        resumed = modest[:5]
        producer = await _producer(broker.bootstrap_servers)
        try:
            for c in resumed:
                await publish(producer, BALANCE_CHANGED, balance(c, "600000.00", 2))
        finally:
            await producer.stop()
        rows = await eventually(
            lambda: _changes_in_outbox(svc, keys),
            lambda rows: len(rows) == before + len(rich) + len(resumed) and all(r[3] for r in rows),
            timeout=60,
        )
        async with svc.runtime.sessions() as session:
            claimed = await session.scalar(
                select(func.count())
                .select_from(inbox)
                .where(inbox.c.consumer == "tiering.balances")
            )
        tiers = {
            c: (await svc.http.get(f"/customers/{c}/tier", headers=admin)).json()["tier"]
            for c in customers
        }
        left_unsent = await unsent(svc.runtime)

    after_outage = rows[before:]  # written during the outage or after it
    on_topic = await count_records(broker.bootstrap_servers, TIER_CHANGED)
    watcher = await TopicWatcher(broker.bootstrap_servers, TIER_CHANGED).start(from_beginning=True)
    try:
        records = await watcher.wait_for(lambda r: True, count=on_topic)
    finally:
        await watcher.stop()
    ids_on_topic = Counter(value_of(r)["event_id"] for r in records)
    expected_ids = {r[0] for r in rows}  # before, during and after the outage
    print(
        f"\nbroker outage: {before} changes before; API write during the outage → {len(rich)} "
        f"expected, {len(written_during) - before} written to the outbox ({waiting} unsent "
        f"while down); {len(resumed)} events after recovery → {len(resumed)} changes expected, "
        f"{len(after_outage) - len(rich)} written; on the topic {on_topic} records, "
        f"{len(set(ids_on_topic) & expected_ids)} of {len(expected_ids)} expected ids, "
        f"{sum(n - 1 for n in ids_on_topic.values())} duplicates, "
        f"{len(expected_ids - set(ids_on_topic))} lost; unsent {left_unsent}; "
        f"readyz during outage: {Counter(during)}"
    )
    assert waiting == len(rich)  # accepted while the broker was down, held in the outbox
    assert during and set(during) == {503}, during
    assert left_unsent == 0
    changes = [(d["customer_id"], d["previous_tier"], d["tier"]) for _, d, _, _ in after_outage]
    assert sorted(changes[: len(rich)]) == [(c, "ordinary", "potential") for c in sorted(rich)]
    assert sorted(changes[len(rich) :]) == [(c, "ordinary", "quality") for c in sorted(resumed)]
    assert set(ids_on_topic) == expected_ids  # the topic holds exactly these
    assert on_topic == len(expected_ids) and max(ids_on_topic.values()) == 1
    assert claimed == CUSTOMERS + len(resumed)
    assert tiers == {
        c: "potential" if c in rich else "quality" if c in resumed else "ordinary"
        for c in customers
    }
