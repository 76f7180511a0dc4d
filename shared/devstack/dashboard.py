"""The live terminal view of `steward up --demo`: what the system is doing, refreshed."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Group
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from shared.contracts.topics import (
    COMPLAINT_CALLBACK_DUE,
    NOTIFICATION_STATUS,
    OPS_ALERTS,
    PROFILE_CALLBACK_DUE,
    SERVICES,
    SLA_BREACHED,
    SLA_WARNING,
    TIER_CHANGED,
    dead_letter_topic,
)
from shared.devstack.simulator import BankSimulator
from shared.web.auth import mint_token

WATCHED = (
    TIER_CHANGED,
    SLA_WARNING,
    SLA_BREACHED,
    COMPLAINT_CALLBACK_DUE,
    PROFILE_CALLBACK_DUE,
    NOTIFICATION_STATUS,
    OPS_ALERTS,
    *(dead_letter_topic(s) for s in SERVICES),
)
OPEN = ("received", "acknowledged", "in_progress", "awaiting_customer")


class Dashboard:
    """Counts the services' output events and polls their APIs; renders with rich."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        apis: Mapping[str, httpx.AsyncClient],
        jwt_secret: str,
        sim: BankSimulator,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.apis = apis
        self.sim = sim
        self.counts: Counter[str] = Counter()
        self.tier_change_times: deque[float] = deque()
        self.distribution: list[dict[str, Any]] = []
        self.open_complaints: list[dict[str, Any]] = []
        self._ops = {"Authorization": f"Bearer {mint_token(jwt_secret, role='ops')}"}
        self._started = time.monotonic()

    async def run(self) -> None:
        """Render until cancelled."""
        with Live(self.render(), refresh_per_second=2, screen=False) as live:
            await asyncio.gather(self._consume(), self._poll(), self._refresh(live))

    async def _refresh(self, live: Live) -> None:
        while True:
            await asyncio.sleep(0.5)
            live.update(self.render())

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, fetch_max_wait_ms=100)
        await consumer.start()
        try:
            tps = [
                TopicPartition(topic, p)
                for topic in WATCHED
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        self.count(record.topic, record.value or b"")
        finally:
            await consumer.stop()

    def count(self, topic: str, value: bytes) -> None:
        """Count one output record in the view's tallies."""
        if topic.endswith(".dead-letter.v1"):
            self.counts["dead letters"] += 1
            self.counts[f"dead letters · {topic.split('.')[0]}"] += 1
            return
        try:
            data = json.loads(value)["data"]
        except (ValueError, KeyError, TypeError):
            return
        if topic == TIER_CHANGED:
            self.counts[f"tier · {data['direction']}"] += 1
            self.tier_change_times.append(time.monotonic())
        elif topic == SLA_WARNING:
            self.counts[f"SLA warning · {data['clock']}"] += 1
        elif topic == SLA_BREACHED:
            self.counts[f"SLA breach · level {data['escalation_level']}"] += 1
        elif topic in (COMPLAINT_CALLBACK_DUE, PROFILE_CALLBACK_DUE):
            self.counts[f"callback · {data['reason']}"] += 1
        elif topic == NOTIFICATION_STATUS:
            self.counts[f"message · {data.get('channel') or '-'} · {data['status']}"] += 1
        elif topic == OPS_ALERTS:
            self.counts[f"alert · {data['kind']}"] += 1

    async def _poll(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(2)

    async def poll_once(self) -> None:
        """Read the tier distribution and the open complaints from the services' APIs."""
        try:
            if "tiering" in self.apis:
                response = await self.apis["tiering"].get("/tiers/distribution", headers=self._ops)
                self.distribution = response.json().get("items", [])
            if "complaints" in self.apis:
                response = await self.apis["complaints"].get(
                    "/complaints", params={"limit": 1000}, headers=self._ops
                )
                items = response.json().get("items", [])
                self.open_complaints = [c for c in items if c["status"] in OPEN]
        except (httpx.HTTPError, ValueError):
            pass

    # --- rendering ----------------------------------------------------------------------

    def render(self) -> Layout:
        layout = Layout()
        layout.split_column(Layout(self._header(), size=3), Layout(name="body"))
        layout["body"].split_row(
            Layout(Group(self._tiers(), self._published()), name="left"),
            Layout(self._complaints(), name="middle"),
            Layout(self._events(), name="right"),
        )
        return layout

    def _header(self) -> Panel:
        sim_now = self.sim.now.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        uptime = int(time.monotonic() - self._started)
        return Panel(
            f"[bold]Steward demo[/] · simulated bank time [bold]{sim_now}[/] · dev clock runs "
            f"[bold yellow]x{self.sim.speed:g}[/] (SLA and callback timers fire within minutes) · "
            f"up {uptime}s · Ctrl-C stops everything",
            style="blue",
        )

    def _tiers(self) -> Panel:
        now = time.monotonic()
        while self.tier_change_times and now - self.tier_change_times[0] > 60:
            self.tier_change_times.popleft()
        table = Table("tier", "customers", "total balance (CNY)", expand=True)
        for row in self.distribution:
            table.add_row(
                row["tier"], f"{row['customers']:,}", f"{float(row['total_balance']):,.2f}"
            )
        return Panel(
            table,
            title=f"Tiers · {len(self.tier_change_times)} changes in the last minute",
        )

    def _published(self) -> Panel:
        table = Table("simulated source", "events", expand=True)
        for topic, count in sorted(self.sim.published.items()):
            table.add_row(topic, f"{count:,}")
        for action, count in sorted(self.sim.desk_actions.items()):
            table.add_row(f"staff desk · {action}", f"{count:,}")
        return Panel(table, title="Bank systems (simulated)")

    def _complaints(self) -> Panel:
        by_severity = Counter(c["severity"] for c in self.open_complaints)
        summary = "  ".join(
            f"{s}: [bold]{by_severity.get(s, 0)}[/]" for s in ("major", "urgent", "normal")
        )
        table = Table("complaint", "sev", "status", "dept", "due", expand=True)
        soonest = sorted(self.open_complaints, key=lambda c: c["resolution_due_at"])[:14]
        now = self.sim.now
        for c in soonest:
            due = datetime.fromisoformat(c["resolution_due_at"])
            left = (due - now).total_seconds() / 3600
            style = "red" if left < 0 else "yellow" if left < 2 else ""
            table.add_row(
                c["complaint_id"][-10:], c["severity"], c["status"], c["department"],
                f"[{style}]{left:+.1f}h[/]" if style else f"{left:+.1f}h",
            )  # fmt: skip
        return Panel(Group(summary, table), title=f"Open complaints · {len(self.open_complaints)}")

    def _events(self) -> Panel:
        table = Table("what happened", "count", expand=True)
        for name, count in sorted(self.counts.items()):
            table.add_row(name, f"{count:,}")
        return Panel(table, title="Events and messages")
