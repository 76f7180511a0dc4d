"""End-to-end latency: BalanceChanged crossing a tier bound → upgrade message sent (sandbox).

All four services run, each in its own process as in production; upstream systems publish
a steady stream of postings, 5% of them tier-crossing upgrades of customers who have a CRM
profile. Latency is measured from just
before a crossing posting is handed to the producer to the sandbox provider's
`delivered_at` for that customer's `tier_upgrade_customer` message.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import func, select

from bench.kit import (
    Server,
    collector_paused,
    envelope,
    percentile,
    producer,
    publish_all,
    service_processes,
    wait_until,
)
from services.complaints.app import SPEC as COMPLAINTS
from services.notifications import store as nstore
from services.notifications.app import SPEC as NOTIFICATIONS
from services.notifications.seed import load_seed
from services.profile.app import SPEC as PROFILE
from services.tiering.app import SPEC as TIERING
from shared.contracts.topics import BALANCE_CHANGED, CUSTOMER_UPDATED, TIER_CHANGED
from shared.tables import timers
from shared.testing.infra import Infrastructure
from shared.testing.kafka import TopicWatcher, value_of

SHANGHAI = ZoneInfo("Asia/Shanghai")
PROBE_EVERY = 20  # 5% of the postings cross a tier bound


@dataclass(frozen=True)
class LatencyScale:
    rate: int  # postings per second
    seconds: int
    background_customers: int


@dataclass
class LatencyResult:
    samples: list[float]  # seconds
    expected: int
    sent_rate: float  # postings/s actually achieved by the publisher
    clock_advanced_s: float
    hops: dict[str, list[float]]  # seconds per hop of the probes, in path order


def _posting(customer: str, account: str, balance: str, seq: int) -> tuple[bytes, bytes]:
    data = {
        "customer_id": customer,
        "account_id": account,
        "currency": "CNY",
        "balance": balance,
        "delta": "0.00",
        "txn_id": f"{account}-{seq}",
        "account_seq": seq,
    }
    return customer.encode(), envelope(BALANCE_CHANGED, data)


def _profile(customer: str, n: int) -> tuple[bytes, bytes]:
    data = {
        "customer_id": customer,
        "name": f"Bench {n}",
        "mobile": f"+86139{n:08d}",
        "language": "en",
        "preferred_channel": "sms",
        "consents": {"service": True, "marketing": False},
        "branch_id": "B001",
    }
    return customer.encode(), envelope(CUSTOMER_UPDATED, data)


def daytime_offset(now: datetime, seconds: float) -> float:
    """Seconds to advance a clock so [now, now + seconds] lies outside 21:00-08:00 Shanghai."""
    local = now.astimezone(SHANGHAI)
    day_start = local.replace(hour=8, minute=5, second=0, microsecond=0)
    day_end = local.replace(hour=20, minute=55, second=0, microsecond=0)
    if day_start <= local and local + timedelta(seconds=seconds) <= day_end:
        return 0.0
    target = day_start if local < day_start else day_start + timedelta(days=1)
    return (target - local).total_seconds()


async def _pending_timers(svc: Server, clock_offset: float) -> int:
    due = func.now() + timedelta(seconds=clock_offset)
    async with svc.sessions() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(timers)
                .where(timers.c.fired_at.is_(None), timers.c.due_at <= due)
            )
            or 0
        )


async def _settled(stack: list[Server], notifications: Server, clock_offset: float) -> None:
    for svc in stack:
        await svc.settled()
    await wait_until(
        lambda: _pending_timers(notifications, clock_offset), lambda n: n == 0, timeout=600
    )
    for svc in stack:
        await svc.settled()


async def _advance_clock(svc: Server, seconds: float) -> None:
    async with httpx.AsyncClient(base_url=svc.base_url) as client:
        response = await client.post(
            "/admin/clock",
            json={"advance_seconds": seconds},
            headers={"Authorization": f"Bearer {svc.token('admin')}"},
        )
        response.raise_for_status()


async def _delivered(notifications: Server, ids: list[str]) -> dict[str, datetime]:
    n, s = nstore.notifications, nstore.sandbox_messages
    async with notifications.sessions() as session:
        rows = await session.execute(
            select(n.c.customer_id, func.min(s.c.delivered_at))
            .join(s, s.c.notification_id == n.c.notification_id)
            .where(n.c.template == "tier_upgrade_customer", n.c.customer_id.in_(ids))
            .group_by(n.c.customer_id)
        )
        return dict(rows.all())


async def _hop_times(
    infra: Infrastructure, notifications: Server, ids: list[str], offset: float
) -> dict[str, dict[str, datetime]]:
    """Per probe: when tiering's transaction began (its TierChanged's occurred_at), when the
    relay queued the TierChanged (the record's timestamp, to the millisecond), when
    notifications recorded the message (its clock less `offset`). The relay deletes what
    it published, so the TierChanged records are read back from the topic."""
    keys = {c.encode() for c in ids}
    watcher = await TopicWatcher(infra.bootstrap_servers, TIER_CHANGED).start(from_beginning=True)
    try:  # each probe's initial tier, then its upgrade
        records = await watcher.wait_for(lambda r: r.key in keys, count=2 * len(keys))
    finally:
        await watcher.stop()
    last: dict[bytes, Any] = {}
    for record in records:  # one partition per key: the higher offset is the upgrade
        if record.key not in last or record.offset > last[record.key].offset:
            last[record.key] = record
    tiered = {
        k.decode(): (
            datetime.fromisoformat(value_of(r)["occurred_at"]),
            datetime.fromtimestamp(r.timestamp / 1000, UTC),
        )
        for k, r in last.items()
    }
    n = nstore.notifications
    async with notifications.sessions() as session:
        first = await session.execute(
            select(n.c.customer_id, func.min(n.c.created_at))
            .where(n.c.template == "tier_upgrade_customer", n.c.customer_id.in_(ids))
            .group_by(n.c.customer_id)
        )
        queued = {c: at - timedelta(seconds=offset) for c, at in first}
    return {
        c: {"tiering": tiered[c][0], "relayed": tiered[c][1], "queued": queued[c]}
        for c in ids
        if c in tiered and c in queued
    }


async def end_to_end(infra: Infrastructure, scale: LatencyScale) -> LatencyResult:
    """Run the four services, publish a steady stream, collect the upgrade latencies."""
    rng = random.Random(11)
    run = f"L{time.time_ns() % 10**8:08d}"
    total = scale.rate * scale.seconds
    probes = [f"{run}-P{n:06d}" for n in range(total // PROBE_EVERY)]
    background = [f"{run}-B{n:06d}" for n in range(scale.background_customers)]
    async with service_processes(infra, TIERING, PROFILE, NOTIFICATIONS, COMPLAINTS) as stack:
        _, _, notifications, _ = stack
        await load_seed(infra.database_url, schema=notifications.schema)
        # Setup: CRM profiles of the probe customers, then everyone's first posting (ordinary).
        await publish_all(
            infra.bootstrap_servers,
            CUSTOMER_UPDATED,
            [_profile(c, n) for n, c in enumerate(probes)],
        )
        warm = [_posting(c, f"{c}-0", "1000.00", 1) for c in probes + background]
        await publish_all(infra.bootstrap_servers, BALANCE_CHANGED, warm)

        async def replica() -> int:
            async with notifications.sessions() as session:
                return len(await nstore.customers_by_id(session, probes))

        step = time.perf_counter()
        await wait_until(replica, lambda n: n == len(probes), timeout=600, every=0.5)
        await _settled(stack, notifications, 0.0)
        print(
            f"  setup: {len(probes)} profiles, {len(warm)} first postings settled in "
            f"{time.perf_counter() - step:.1f} s",
            flush=True,
        )
        # Quiet hours (21:00-08:00 Shanghai) would rightly defer the upgrade messages.
        advanced = daytime_offset(datetime.now(SHANGHAI), scale.seconds + 120)
        if advanced:
            await _advance_clock(notifications, advanced)

        published: dict[str, float] = {}
        kafka = await producer(infra.bootstrap_servers, linger_ms=0)
        seq: dict[str, int] = {}
        try:
            with collector_paused():
                started = time.perf_counter()
                acks = []
                probe_iter = iter(probes)
                for n in range(total):
                    # Steady pacing: posting n goes out at started + n / rate.
                    delay = started + n / scale.rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if n % PROBE_EVERY == PROBE_EVERY - 1 and (probe := next(probe_iter, None)):
                        key, value = _posting(probe, f"{probe}-0", "60000.00", 2)
                        published[probe] = time.time()
                    else:
                        customer = rng.choice(background)
                        account = f"{customer}-{rng.randint(0, 1)}"
                        seq[account] = seq.get(account, 1) + 1
                        balance = f"{rng.randint(10_000, 2_000_000) / 100:.2f}"
                        key, value = _posting(customer, account, balance, seq[account])
                    acks.append(await kafka.send(BALANCE_CHANGED, value, key=key))
                sent_rate = total / (time.perf_counter() - started)
                await asyncio.gather(*acks)
        finally:
            await kafka.stop()

        ids = list(published)
        delivered = await wait_until(
            lambda: _delivered(notifications, ids),
            lambda d: len(d) == len(ids),
            timeout=300,
            every=0.5,
        )
        times = await _hop_times(infra, notifications, ids, advanced)
    offset = advanced
    samples = [(delivered[c] - timedelta(seconds=offset)).timestamp() - published[c] for c in ids]
    hops: dict[str, list[float]] = {h: [] for h in HOPS}
    for c, at in times.items():
        marks = [
            published[c],
            at["tiering"].timestamp(),
            at["relayed"].timestamp(),
            at["queued"].timestamp(),
            (delivered[c] - timedelta(seconds=offset)).timestamp(),
        ]
        for hop, start, end in zip(HOPS, marks, marks[1:], strict=False):
            hops[hop].append(end - start)
    return LatencyResult(samples, len(ids), sent_rate, offset, hops)


# Where a probe's time goes; each mark is a transaction's start, but the relay's: the moment
# it queued the TierChanged.
HOPS = (
    "published → tiering transaction",
    "tiering transaction → relay",
    "relay → notifications transaction",
    "notifications transaction → sandbox delivery",
)


def summary(result: LatencyResult) -> dict[str, Any]:
    ms = [s * 1000 for s in result.samples]
    return {
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "max": max(ms),
        "count": len(ms),
    }
