"""`steward up --demo`: the simulator drives the real stack and the live view renders it."""

from __future__ import annotations

import asyncio
import io

import pytest
from rich.console import Console

from shared.contracts.topics import COMPLAINT_UPDATED, TIER_CHANGED, dead_letter_topic
from shared.devstack.dashboard import Dashboard
from shared.devstack.simulator import BankSimulator
from shared.testing.kafka import TopicWatcher, value_of
from shared.testing.services import TEST_JWT_SECRET
from shared.testing.stack import Stack
from shared.testing.waiting import eventually

pytestmark = pytest.mark.e2e


async def test_simulator_drives_the_stack_and_the_view_renders(stack: Stack, infra):
    apis = {name: svc.http for name, svc in stack.services.items()}
    sim = BankSimulator(
        bootstrap_servers=infra.bootstrap_servers,
        apis=apis,
        jwt_secret=TEST_JWT_SECRET,
        customers=40,
        speed=1,  # keep the shared stack's clocks where the other e2e tests expect them
        postings_per_second=50,
        garbage_every=(0.5, 1.0),
        seed=11,
    )
    ours = {c.customer_id.encode() for c in sim.customers}
    watchers = {
        topic: await TopicWatcher(infra.bootstrap_servers, topic).start()
        for topic in (TIER_CHANGED, COMPLAINT_UPDATED, dead_letter_topic("tiering"))
    }
    view = Dashboard(
        bootstrap_servers=infra.bootstrap_servers, apis=apis, jwt_secret=TEST_JWT_SECRET, sim=sim
    )
    running = asyncio.create_task(sim.run())
    try:
        changes = await watchers[TIER_CHANGED].wait_for(
            lambda r: r.key in ours, count=40, timeout=60
        )
        assert {value_of(r)["data"]["direction"] for r in changes} >= {"initial"}
        await watchers[COMPLAINT_UPDATED].wait_for(lambda r: r.key in ours, timeout=60)
        await watchers[dead_letter_topic("tiering")].wait_for(
            lambda r: r.key == b"garbage", timeout=60
        )
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        for watcher in watchers.values():
            await watcher.stop()

    for record in changes:
        view.count(record.topic, record.value or b"")
    await eventually(view.poll_once, lambda _: bool(view.distribution))
    screen = io.StringIO()
    Console(file=screen, width=160, height=50).print(view.render())
    text = screen.getvalue()
    assert "Tiers" in text and "Open complaints" in text and "tier · initial" in text
    assert sim.published["crm.customer-updated.v1"] == 40
