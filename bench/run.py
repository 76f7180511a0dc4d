"""Measure the pipeline against the raw limits of this machine; print a table, write JSON.

python -m bench.run            # full run (make bench)
python -m bench.run --quick    # smoke run (make test): completes and verifies, no speed claims
python -m bench.run --only complaints --only notifications   # some sections only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import func, select, text

from bench import complaints, latency, notify
from bench.cpu import CpuUse, cpu_use, loop_milliseconds
from bench.kit import Server, percentile, service_process, wait_until
from bench.workload import Workload, balance_workload
from services.tiering.app import SPEC as TIERING
from services.tiering.store import customer_tiers
from shared.contracts.topics import BALANCE_CHANGED, TIER_CHANGED
from shared.db import asyncpg_dsn
from shared.devstack.topics import TopicDefinition, create_topics
from shared.tables import inbox, outbox
from shared.testing.infra import Infrastructure, empty_broker, test_infrastructure
from shared.testing.kafka import census, count_records

RESULTS = Path(__file__).parent / "results" / "latest.json"


@dataclass(frozen=True)
class Scale:
    events: int
    customers: int
    latency_rate: int
    latency_seconds: int
    latency_background: int
    api_seconds: float
    api_clients: int
    breaches: int
    callbacks: int


FULL = Scale(200_000, 100_000, 500, 60, 5_000, 20, 32, 100_000, 50_000)
QUICK = Scale(4_000, 2_000, 50, 5, 100, 2, 32, 1_000, 500)


@dataclass
class Report:
    figures: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)

    def add(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        target: float | None = None,
        higher_is_better: bool = True,
        **extra: Any,
    ) -> None:
        """Record and print one figure, with its target and whether it meets it."""
        figure: dict[str, Any] = {"value": round(value, 3), "unit": unit} | extra
        verdict = ""
        if target is not None:
            meets = value >= target if higher_is_better else value <= target
            figure |= {"target": target, "meets": meets}
            sign = "≥" if higher_is_better else "≤"
            ratio = value / target if target else 0.0
            verdict = f"  target {sign} {target:,.{_digits(target)}f}  ({ratio:.2f}x target) "
            verdict += "meets" if meets else "MISSES"
        self.figures[name] = figure
        print(f"  {name:<56} {value:>12,.{_digits(value)}f} {unit:<9}{verdict}", flush=True)

    def cpu(self, span: str, use: CpuUse) -> None:
        """Record and print the cores each role used over one measured span."""
        self.figures[f"cpu during {span}"] = {
            "value": round(use.busy, 2),
            "unit": "cores",
            "of": os.cpu_count(),
            "by_role": {name: round(cores, 2) for name, cores in use.cores.items()},
            "waiting_by_role": {name: round(cores, 2) for name, cores in use.waiting.items()},
        }
        roles = ", ".join(f"{name} {cores:.2f}" for name, cores in use.cores.items())
        print(f"  cpu during {span}: {use.busy:.2f} of {os.cpu_count()} cores ({roles})")
        queued = ", ".join(
            f"{name} {cores:.2f}" for name, cores in use.waiting.items() if cores >= 0.01
        )
        if queued:
            print(f"    waiting for a core: {queued}")

    def speed(self, moment: str) -> None:
        """Record and print how fast a core is now (see bench.cpu.loop_milliseconds)."""
        ms = loop_milliseconds()
        self.figures[f"machine speed {moment}"] = {"value": round(ms, 1), "unit": "ms"}
        print(f"  machine speed {moment}: a fixed Python loop took {ms:.1f} ms", flush=True)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks[name] = ok
        print(f"  {'✓' if ok else '✗'} {name} {detail}", flush=True)


def _digits(value: float) -> int:
    return 3 if abs(value) < 10 else 1


async def produce_all(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Publish pre-encoded messages as fast as acks=all allows; returns seconds taken."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for key, value in messages:
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def raw_consume(bootstrap: str, topic: str, expected: int) -> float:
    """(a) aiokafka consuming the same messages, JSON-decoding them, committing offsets."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-raw-{time.time_ns()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
        max_poll_records=500,
    )
    await consumer.start()
    seen = 0
    started = None
    try:
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            if batches and started is None:
                started = time.perf_counter()  # after the group join, like the service's lag wait
            for records in batches.values():
                for record in records:
                    json.loads(record.value)
                seen += len(records)
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()
    return expected / (time.perf_counter() - (started or time.perf_counter()))


async def raw_upsert(database_url: str, workload: Workload) -> float:
    """(b) asyncpg upserting per-customer rows, one set-based statement per 500-row batch."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(
            "CREATE TEMP TABLE raw_balances (customer_id text PRIMARY KEY, total numeric(18,2))"
        )
        rows = [(key.decode(), Decimal(n % 1000)) for n, (key, _) in enumerate(workload.messages)]
        started = time.perf_counter()
        for i in range(0, len(rows), 500):
            chunk = list(dict(rows[i : i + 500]).items())  # one row per customer per batch
            await conn.execute(
                """INSERT INTO raw_balances (customer_id, total)
                   SELECT * FROM unnest($1::text[], $2::numeric[])
                   ON CONFLICT (customer_id) DO UPDATE SET total = excluded.total""",
                [r[0] for r in chunk],
                [r[1] for r in chunk],
            )
        return len(rows) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def tiering_throughput(
    infra: Infrastructure, workload: Workload, report: Report, replicas: int
) -> float:
    """The real tiering service — `replicas` processes sharing the partitions, as deployed —
    consuming the pre-produced postings until every one is processed and every TierChanged
    is published. Timed from the first batch's transaction (Postgres now()) to the latest
    TierChanged on the topic (its timestamp: when the relay queued it)."""
    changes_before = await count_records(infra.bootstrap_servers, TIER_CHANGED)
    events = len(workload.messages)
    async with service_process(TIERING, infra, replicas=replicas, from_start=True) as svc:

        async def progress() -> tuple[int, int]:
            async with svc.sessions() as session:
                done = await session.scalar(select(func.count()).select_from(inbox))
                unsent = await session.scalar(
                    select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
                )
            return int(done or 0), int(unsent or 0)

        # Cheap probes while it works (the figure comes from recorded timestamps, so how
        # often we look does not change it): counting a growing inbox every 50 ms was a
        # steady load on the database it measured. The exact count confirms the end.
        timeout = 60 if events < 10_000 else 1800
        await wait_until(svc.lag, lambda n: n == 0, timeout=timeout, every=0.25)
        await wait_until(progress, lambda p: p == (events, 0), timeout=timeout, every=0.25)
        async with svc.sessions() as session:
            started = select(func.min(inbox.c.processed_at)).scalar_subquery()
            first, consumed = (
                await session.execute(
                    select(
                        started,
                        func.extract(
                            "epoch",
                            select(func.max(inbox.c.processed_at)).scalar_subquery() - started,
                        ),
                    )
                )
            ).one()
            rows = await session.execute(
                select(customer_tiers.c.customer_id, customer_tiers.c.tier)
            )
            actual = dict(rows.all())
            history = await session.scalar(text("SELECT count(*) FROM tier_history"))
    after = await census(infra.bootstrap_servers, TIER_CHANGED)
    if after.latest_ms is None:
        raise RuntimeError("no TierChanged on the topic: nothing to time the run by")
    published = after.count - changes_before
    elapsed = (datetime.fromtimestamp(after.latest_ms / 1000, UTC) - first).total_seconds()
    report.check(
        f"tiering x{replicas}: final tiers equal the independently computed ones",
        actual == workload.final_tiers,
        f"({len(actual)} customers)",
    )
    report.check(
        f"tiering x{replicas}: TierChanged count equals the expected number",
        published == workload.tier_changes == history,
        f"(expected {workload.tier_changes}, published {published}, history {history})",
    )
    report.add(f"  x{replicas} of which until every posting was processed", float(consumed), "s")
    report.add(f"  x{replicas} all processed and published", float(elapsed), "s")
    return events / float(elapsed or "nan")


# Services measured as one process, then as two replicas sharing the schema and the
# partitions (scale-out; this machine has two cores).
SCALE_OUT = (1, 2)

SECTIONS = ("tiering", "latency", "complaints", "notifications")


def main(quick: bool, output: Path = RESULTS, sections: tuple[str, ...] = SECTIONS) -> int:
    scale = QUICK if quick else FULL
    report = Report()
    print(f"Steward benchmark ({'quick' if quick else 'full'}): {platform.processor() or 'cpu'}")
    started = time.perf_counter()
    with test_infrastructure() as infra:
        print(f"  infrastructure: Postgres {infra.database_source}, broker {infra.broker_source}")
        # uvloop, as uvicorn runs every service: the raw limits are those of the event loop
        # the services use.
        uvloop.run(measure(infra, scale, report, sections))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "at": datetime.now(UTC).isoformat(),
                "mode": "quick" if quick else "full",
                "machine": {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
                "scale": scale.__dict__,
                "sections": list(sections),
                "seconds": round(time.perf_counter() - started, 1),
                "figures": report.figures,
                "checks": report.checks,
            },
            indent=2,
        )
    )
    print(f"  written to {output} (load average now {os.getloadavg()[0]:.1f})")
    return 0 if all(report.checks.values()) else 1


async def measure(
    infra: Infrastructure, scale: Scale, report: Report, sections: tuple[str, ...] = SECTIONS
) -> None:
    """Every measurement (or the chosen sections), side by side, on one infrastructure."""
    print(f"  load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    # Each section gets an empty embedded broker: its fetches slow down with every batch a
    # partition holds (`python -m bench.broker`: 500 msg/s tailed from a partition of 10,000
    # one-record batches took 93 to 106 % of a core, 16 % when empty), so a section on a shared
    # broker would pay for the records of the sections before it.
    steps = {
        "tiering": measure_tiering,
        "latency": measure_latency,
        "complaints": measure_complaints,
        "notifications": measure_notifications,
    }
    for section in SECTIONS:
        if section not in sections:
            continue
        report.speed(f"before {section}")
        async with empty_broker(infra) as own:
            await steps[section](own, scale, report)
        report.speed(f"after {section}")


async def measure_tiering(infra: Infrastructure, scale: Scale, report: Report) -> None:
    """1 and 2: the raw limits, then the real tiering pipeline on the same postings."""
    print("== 1. raw limits, 2. tiering throughput")
    workload = balance_workload(scale.events, scale.customers)
    crossing = workload.tier_changes
    print(
        f"  workload: {scale.events:,} postings, {scale.customers:,} customers, "
        f"{crossing:,} tier changes expected"
    )
    raw_topic = f"bench.raw-{time.time_ns()}"
    await create_topics(infra.bootstrap_servers, [TopicDefinition(raw_topic, 12, 1, 3_600_000)])
    seconds = await produce_all(infra.bootstrap_servers, raw_topic, workload.messages)
    report.add("produce (acks=all)", len(workload.messages) / seconds, "msg/s")
    raw_a = await raw_consume(infra.bootstrap_servers, raw_topic, len(workload.messages))
    report.add("raw (a) aiokafka consume+decode+commit", raw_a, "msg/s")
    raw_b = await raw_upsert(infra.database_url, workload)
    report.add("raw (b) asyncpg set-based upsert", raw_b, "rows/s")

    await produce_all(infra.bootstrap_servers, BALANCE_CHANGED, workload.messages)
    for replicas in SCALE_OUT:
        async with cpu_use() as cpu:
            tiering = await tiering_throughput(infra, workload, report, replicas)
        report.cpu(f"tiering x{replicas}", cpu)
        report.add(
            f"tiering pipeline, {replicas} process{'es' if replicas > 1 else ''}",
            tiering,
            "events/s",
        )
        report.add(
            f"tiering x{replicas} / min(raw a, raw b)",
            tiering / min(raw_a, raw_b),
            "ratio",
            target=0.5,
        )
    report.figures["raw_min"] = {"value": round(min(raw_a, raw_b), 1), "unit": "msg/s"}


async def measure_latency(infra: Infrastructure, scale: Scale, report: Report) -> None:
    """3: BalanceChanged crossing a bound → upgrade message sent, four services running."""
    print(
        f"== 3. end-to-end latency: {scale.latency_rate}/s for {scale.latency_seconds} s, "
        f"{100 // latency.PROBE_EVERY}% tier-crossing"
    )
    async with cpu_use() as cpu:
        result = await latency.end_to_end(
            infra,
            latency.LatencyScale(
                scale.latency_rate, scale.latency_seconds, scale.latency_background
            ),
        )
    figures = latency.summary(result)
    report.add("publisher's achieved rate", result.sent_rate, "events/s")
    report.add("e2e latency p50", figures["p50"], "ms")
    report.add("e2e latency p95", figures["p95"], "ms")
    report.add("e2e latency p99", figures["p99"], "ms", target=200, higher_is_better=False)
    report.add("e2e latency max", figures["max"], "ms")
    for hop, seconds in result.hops.items():
        if seconds:
            ms = [s * 1000 for s in seconds]
            report.add(f"  {hop} p50", percentile(ms, 50), "ms")
            report.add(f"  {hop} p99", percentile(ms, 99), "ms")
    if result.clock_advanced_s:
        print(
            f"  (notifications clock advanced {result.clock_advanced_s / 3600:.1f} h: quiet hours)"
        )
    report.check(
        "e2e: every tier-crossing posting led to a sent upgrade message",
        figures["count"] == result.expected,
        f"({figures['count']} of {result.expected})",
    )
    report.cpu("latency (setup included)", cpu)


async def measure_complaints(infra: Infrastructure, scale: Scale, report: Report) -> None:
    """4: POST /complaints at 32 clients, then mass SLA breaches, then POST again; one
    service process, then two sharing the schema (the clients spread over both, as behind
    a load balancer).

    The target is read on the new schema. The second POST shows what the breaches leave
    behind: until autovacuum has been through them, 500,000 dead rows in the complaints,
    timers and outbox tables (a manual VACUUM after them: 1,514 and 1,603 req/s, against
    1,200 to 1,478 without).
    """
    print(
        f"== 4. complaints: POST at {scale.api_clients} clients; "
        f"{scale.breaches:,} simultaneous breaches; POST again"
    )
    for replicas in SCALE_OUT:
        x = f"x{replicas}"
        async with complaints.complaints_server(infra, replicas) as server:
            await _measure_posts(server, scale, report, x, target=1500)
            breach = await complaints.mass_breach(infra, server, scale.breaches)
            report.add(
                f"{x} {scale.breaches:,} breaches → SlaBreached published",
                breach["seconds"],
                "s",
                target=10 * scale.breaches / FULL.breaches,
                higher_is_better=False,
            )
            report.add(f"{x} breaches published", breach["per_second"], "events/s")
            report.add(f"  {x} of which until every timer fired", breach["fired_seconds"], "s")
            report.check(
                f"complaints {x}: one SlaBreached per complaint on the topic, each escalated",
                breach["on_topic"] == breach["escalated"] == scale.breaches,
                f"(on topic {breach['on_topic']}, escalated {breach['escalated']})",
            )
            report.cpu(f"{x} breaches", breach["cpu"])
            await _measure_posts(server, scale, report, x, after=" after the breaches")


async def _measure_posts(
    server: Server,
    scale: Scale,
    report: Report,
    x: str,
    *,
    after: str = "",
    target: float | None = None,
) -> None:
    """POST /complaints at `scale.api_clients` clients: rate, latency, CPU, all answered."""
    async with cpu_use() as cpu:
        api = await complaints.post_complaints(server, scale.api_clients, scale.api_seconds)
    name = f"{x} POST /complaints{after}"
    report.add(name, api["rps"], "req/s", target=target)
    report.add(f"{name} p50", api["p50_ms"], "ms")
    report.add(f"{name} p99", api["p99_ms"], "ms")
    report.check(
        f"complaints {x}{after}: every POST answered 201",
        not api["failures"] and api["requests"] > 0,
        f"({api['requests']} requests, failures {api['failures']})",
    )
    report.cpu(name, cpu)


async def measure_notifications(infra: Infrastructure, scale: Scale, report: Report) -> None:
    """5: a burst of CallbackDue events through the sandbox provider."""
    print(f"== 5. notifications: burst of {scale.callbacks:,} CallbackDue")
    async with cpu_use() as cpu:
        result = await notify.burst(infra, scale.callbacks)
    report.add("notifications via sandbox", result["per_second"], "msg/s", target=2000)
    report.check(
        "notifications: every callback sent once through the sandbox",
        result["sandbox_messages"] == result["sent"] == scale.callbacks,
        f"(sandbox {result['sandbox_messages']}, sent {result['sent']}, {result['statuses']})",
    )
    report.cpu("notifications burst", cpu)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: small, verifies only")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="run this section (repeatable)"
    )
    args = parser.parse_args()
    sys.exit(main(args.quick, args.output, tuple(args.only or SECTIONS)))


if __name__ == "__main__":
    cli()
