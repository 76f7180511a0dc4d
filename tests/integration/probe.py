"""A probe service for platform tests: records effects and misbehaves on request.

Its handler reads `txn_id` from each BalanceChanged: `transient:*` fails with a real
transient fault (its DB connection is killed) while the id is in `failing`, `reject:*`
is rejected as bad input, `crash:*` raises a bug every time, `oversized:*` emits an
event larger than a record may hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, Table, Text, func, insert, text

from shared.contracts import Envelope
from shared.contracts.events import ProfileCallbackDue
from shared.contracts.topics import BALANCE_CHANGED, PROFILE_CALLBACK_DUE
from shared.messaging.consumer import RejectedEvent, Subscription
from shared.service import Runtime, ServiceSpec, Wiring
from shared.settings import StewardSettings
from shared.tables import create_platform_objects
from shared.timers import DueTimer
from shared.unit_of_work import Tx

metadata = MetaData()
effects = Table(
    "effects",
    metadata,
    Column("event_id", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("txn_id", Text, nullable=False),
    Column("at", DateTime(timezone=True), server_default=func.now()),
)
fired = Table(
    "fired",
    metadata,
    Column("kind", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("worker", Text, nullable=True),
)


class ProbeHandler:
    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.attempts: dict[str, int] = {}

    async def __call__(self, tx: Tx, events: list[Envelope[Any]]) -> None:
        for event in events:
            txn = event.data.txn_id
            self.attempts[txn] = self.attempts.get(txn, 0) + 1
            if txn.startswith("transient:") and txn in self.failing:
                # A real transient fault: the server kills this transaction's connection.
                await tx.session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            if txn.startswith("reject:"):
                raise RejectedEvent(event, f"data.txn_id: {txn!r} is refused", "probe_rejected")
            if txn.startswith("crash:"):
                raise RuntimeError(f"bug while handling {txn}")
            if txn.startswith("oversized:"):
                tx.emit(PROFILE_CALLBACK_DUE, _oversized(event), key=event.data.customer_id)
        await tx.session.execute(
            insert(effects),
            [
                {
                    "event_id": str(e.event_id),
                    "customer_id": e.data.customer_id,
                    "txn_id": e.data.txn_id,
                }
                for e in events
            ],
        )


def _oversized(event: Envelope[Any]) -> ProfileCallbackDue:
    return ProfileCallbackDue(
        customer_id=event.data.customer_id,
        reason="transaction_decline",
        evidence={"padding": "x" * 1_100_000},
        assignee_id="E001",
        due_at=event.occurred_at,
    )


async def record_fired(tx: Tx, due: list[DueTimer]) -> None:
    await tx.session.execute(
        insert(fired), [{"kind": t.kind, "key": t.key, "worker": t.payload.get("w")} for t in due]
    )


def create_probe_schema(connection: Any) -> None:
    create_platform_objects(connection)
    metadata.create_all(connection)


def probe_spec(handler: ProbeHandler) -> ServiceSpec:
    def wire(rt: Runtime) -> Wiring:
        return Wiring(
            subscriptions=[Subscription("events", (BALANCE_CHANGED,), handler)],
            timer_handlers={"probe": record_fired},
        )

    return ServiceSpec(
        name="probe", settings=StewardSettings, migrations=Path("/nonexistent"), wire=wire
    )
