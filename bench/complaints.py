"""Complaints: POST /complaints over real HTTP at 32 concurrent clients, and mass SLA breaches.

The service runs as its own process (`python -m services.complaints`, uvicorn) on a free
127.0.0.1 port, as it would in production. The load generator is a minimal keep-alive
HTTP/1.1 client on asyncio streams: on two cores a full HTTP client library would spend
more CPU than the server it measures.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.cpu import cpu_use
from bench.kit import Server, percentile, service_process, wait_until
from services.complaints import store
from services.complaints.app import SPEC as COMPLAINTS
from services.complaints.domain import (
    TIMER_SLA,
    Complaint,
    Filing,
    file_complaint,
    grade,
    sla_timer_key,
)
from services.complaints.settings import ComplaintsSettings
from shared.contracts.topics import SLA_BREACHED
from shared.db import asyncpg_dsn
from shared.testing.infra import Infrastructure
from shared.testing.kafka import count_records
from shared.timers import POLL_SECONDS

ROOT = Path(__file__).resolve().parent.parent


def complaints_server(
    infra: Infrastructure, replicas: int = 1
) -> AbstractAsyncContextManager[Server]:
    """The complaints service as `replicas` processes on a new schema, consumers at topic ends."""
    return service_process(COMPLAINTS, infra, replicas=replicas)


# --- POST /complaints at 32 concurrent clients --------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def post_complaints(server: Server, clients: int, seconds: float) -> dict[str, Any]:
    """Each client files complaints back to back on its own keep-alive connection; the
    clients are spread evenly over the replicas, as a load balancer would."""
    token = server.token("staff", employee_id="E001", department="customer_service")
    latencies: list[float] = []
    failures: dict[int, int] = {}
    stop_at = 0.0

    def request(n: int, port: int) -> bytes:
        body = json.dumps(
            {
                "customer_id": f"CB{n % 50_000:06d}",
                "channel": "branch",
                "category": "fees",
                "description": "Charged twice for the annual card fee",
                "branch_id": "B001",
            }
        ).encode()
        head = (
            f"POST /complaints HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def client(k: int) -> None:
        port = server.ports[k % len(server.ports)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = k
        try:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                writer.write(request(n, port))
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - started)
                if status != 201:
                    failures[status] = failures.get(status, 0) + 1
                n += clients
        finally:
            writer.close()

    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - started
    ms = [s * 1000 for s in latencies]
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "failures": failures,
    }


# --- mass SLA breaches --------------------------------------------------------------------


def _seed_rows(count: int, due_at: datetime) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Complaint rows whose response deadline is `due_at`, cloned from one complaint the
    domain filed (received that long before)."""
    policy = ComplaintsSettings(
        kafka_bootstrap_servers="x", database_url="x", steward_jwt_secret="x" * 32
    ).policy()

    def filed(received_at: datetime) -> tuple[Complaint, datetime]:
        filing = Filing(
            complaint_ref="BENCH-TEMPLATE",
            customer_id="C-TEMPLATE",
            channel="branch",
            category="fees",
            description="Charged twice for the annual card fee",
            amount_involved=None,
            received_by="E001",
            branch_id="B001",
            received_at=received_at,
        )
        grading = grade(filing.category, filing.channel, None, None, False, policy)
        complaint, _ = file_complaint("TEMPLATE", filing, grading, False, policy)
        return complaint, complaint.response_clock.threshold("breach_1", policy)

    _, due = filed(due_at)
    complaint, _ = filed(due_at - (due - due_at))
    template = store._row(complaint, due_at)
    columns = list(template)
    run = uuid.uuid4().hex[:6]
    complaints = []
    for n in range(count):
        complaint_id = f"SLA{run}-{n:07d}"
        row = dict(template)
        row["complaint_id"] = complaint_id
        row["complaint_ref"] = f"BENCH-{run}-{n}"
        row["customer_id"] = f"CS{run}-{n:07d}"
        row["document"] = json.dumps(
            json.loads(template["document"])
            | {k: row[k] for k in ("complaint_id", "complaint_ref", "customer_id")}
        )
        complaints.append(tuple(row[c] for c in columns))
    return columns, complaints


# How far ahead of their deadline the timers are written: seeding took up to 90 µs a
# complaint, and the workers must have looked once since (within POLL_SECONDS).
LEAD = timedelta(seconds=2)
LEAD_PER_COMPLAINT = timedelta(microseconds=150)

# Timers due by the breach moment only: complaints filed earlier have timers pending for later.
# `(SELECT $2)` for the reason the timer claim has it (shared.tables.CLAIM_TIMERS_QUERY): with
# `$2` the planner estimated the seeded timers, due together, at a few rows, and each probe
# read them all (17 ms a probe, 3.9 of the 27 s Postgres spent executing statements in a run).
_PENDING = (
    "SELECT EXISTS (SELECT 1 FROM timers WHERE kind = $1 AND due_at <= (SELECT $2::timestamptz)"
    " AND fired_at IS NULL), EXISTS (SELECT 1 FROM outbox WHERE sent_at IS NULL)"
)


async def mass_breach(infra: Infrastructure, server: Server, count: int) -> dict[str, Any]:
    """Seed `count` complaints whose response deadline is a few seconds ahead, and their
    timers in one statement (so all fall due at once, for every replica, on real time); time
    from that deadline until every SlaBreached is published, and the CPU over that span.

    The timers are written ahead of their deadline, as the service writes them when a
    complaint is filed: an idle timer worker learns of timers it did not schedule itself at
    its next poll, so timers inserted already due would add up to a poll to the figure.
    """
    # The probe plans as the timer claim does (`claim_timers`, without bitmap scans): on
    # the new schema's timers, never analyzed, it ANDed two bitmaps of 100,000 entries each
    # time.
    conn = await asyncpg.connect(
        asyncpg_dsn(infra.database_url),
        server_settings={"search_path": server.schema, "enable_bitmapscan": "off"},
    )
    try:
        due_at = await conn.fetchval("SELECT now()") + LEAD + count * LEAD_PER_COMPLAINT
        seeded = time.perf_counter()
        columns, rows = _seed_rows(count, due_at)
        complaint_ids = [r[0] for r in rows]
        await conn.copy_records_to_table("complaints", records=rows, columns=columns)
        seed_seconds = time.perf_counter() - seeded
        before = await count_records(infra.bootstrap_servers, SLA_BREACHED)
        timers = [
            (
                TIMER_SLA,
                sla_timer_key(cid, "response", 0),
                due_at,
                json.dumps({"complaint_id": cid, "clock": "response", "level": "breach_1"}),
            )
            for cid in complaint_ids
        ]
        await conn.copy_records_to_table(
            "timers", records=timers, columns=["kind", "key", "due_at", "payload"]
        )
        ahead = (due_at - await conn.fetchval("SELECT clock_timestamp()")).total_seconds()
        if ahead < POLL_SECONDS:
            raise RuntimeError(f"timers written only {ahead:.1f} s before their deadline")
        started = time.perf_counter() + ahead
        await asyncio.sleep(ahead)

        fired_seconds: float | None = None

        async def done() -> bool:
            """All timers fired and the outbox relayed; notes when the last timer fired.

            EXISTS on the partial indexes stops at the first pending row. Counting the
            published rows instead (300,000 outbox rows) every 250 ms took 116 ms a call:
            10 of the 33 s Postgres spent executing statements in a run went to the probe.
            """
            nonlocal fired_seconds
            unfired, unsent = await conn.fetchrow(_PENDING, TIMER_SLA, due_at)
            if not unfired and fired_seconds is None:
                fired_seconds = time.perf_counter() - started
            return not unfired and not unsent

        async with cpu_use() as cpu:
            await wait_until(done, bool, timeout=1800, every=0.1)
        elapsed = time.perf_counter() - started
        on_topic = await count_records(infra.bootstrap_servers, SLA_BREACHED) - before
        escalated = await conn.fetchval(
            "SELECT count(*) FROM complaints WHERE escalation_level = 1 AND complaint_id = ANY($1)",
            complaint_ids,
        )
    finally:
        await conn.close()
    return {
        "seconds": elapsed,
        "fired_seconds": fired_seconds if fired_seconds is not None else elapsed,
        "per_second": count / elapsed,
        "seed_seconds": seed_seconds,
        "on_topic": on_topic,
        "escalated": int(escalated),
        "cpu": cpu,
    }
