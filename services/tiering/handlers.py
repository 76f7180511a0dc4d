"""Balance events, grace timers and policy sweeps → customer tiers → TierChanged (outbox)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering import store
from services.tiering.domain import (
    BANK_TZ,
    MAINTENANCE_TEAM,
    AccountBalance,
    CustomerBook,
    TierPolicy,
    UnknownCurrency,
    bank_day,
    evaluate,
    supersedes,
    to_cny,
)
from shared.bulk import Upsert
from shared.contracts import Envelope
from shared.contracts.events import BalanceChanged, TierChanged
from shared.contracts.topics import TIER_CHANGED
from shared.contracts.types import MONEY_LIMIT
from shared.messaging.consumer import RejectedEvent, booking_time
from shared.tables import timers
from shared.timers import DueTimer
from shared.unit_of_work import TimerMoves, Tx

GRACE_END = "tiering.grace_end"
REEVALUATE = "tiering.reevaluate"
SWEEP_CHUNK = 1000
CNY_OUT_OF_RANGE = f"data.balance: in CNY, it or the customer's total reaches {MONEY_LIMIT:.0E}"


class TierLedger:
    """Evaluates customers within one transaction and writes every outcome at the end."""

    def __init__(self, tx: Tx, policy: TierPolicy, version: int) -> None:
        self.tx = tx
        self.policy = policy
        self.version = version
        self._tiers: dict[str, dict[str, Any]] = {}
        self._history: list[dict[str, Any]] = []
        self._grace = TimerMoves(GRACE_END)

    @classmethod
    async def open(
        cls, tx: Tx, customer_ids: Iterable[str]
    ) -> tuple[TierLedger, dict[str, CustomerBook]]:
        """A ledger under the policy in force, and the customers' books, locked: read in
        one statement (store.load_books)."""
        loaded = await store.load_books(tx.session, customer_ids, today=bank_day(tx.now))
        return cls(tx, loaded.policy, loaded.version), loaded.books

    def evaluate(
        self, book: CustomerBook, *, cause: str, causation: Envelope[Any] | None = None
    ) -> None:
        """Decide the customer's tier now; record and emit a change if there is one."""
        now = self.tx.now
        amount = book.basis_amount(self.policy, now)
        outcome = evaluate(book.tier, book.grace_until, amount, self.policy, now)
        if outcome.grace_until != book.grace_until:
            if outcome.grace_until is None:
                self._grace.cancel(book.customer_id)
            else:
                payload = {"customer_id": book.customer_id}
                self._grace.schedule(book.customer_id, outcome.grace_until, payload)
        self._tiers[book.customer_id] = {
            "customer_id": book.customer_id,
            "tier": outcome.tier,
            "total_balance": book.total_cny,
            "basis": self.policy.basis,
            "maintenance_team": MAINTENANCE_TEAM[outcome.tier],
            "since": now,
            "evaluated_at": now,
            "grace_until": outcome.grace_until,
        }
        if outcome.move is not None:
            self._history.append(
                {
                    "customer_id": book.customer_id,
                    "previous_tier": book.tier,
                    "tier": outcome.tier,
                    "direction": outcome.move,
                    "total_balance": amount,
                    "changed_at": now,
                    "cause_event_id": str(causation.event_id) if causation else None,
                    "cause": cause,
                }
            )
            self.tx.emit(
                TIER_CHANGED,
                TierChanged(
                    customer_id=book.customer_id,
                    previous_tier=book.tier,
                    tier=outcome.tier,
                    direction=outcome.move,
                    total_balance=amount,
                    basis=self.policy.basis,
                    maintenance_team=MAINTENANCE_TEAM[outcome.tier],
                    evaluated_at=now,
                ),
                key=book.customer_id,
                causation=causation,
            )
        book.tier = outcome.tier
        book.grace_until = outcome.grace_until

    async def flush(self, *also: Upsert, at_commit: bool = False) -> None:
        """Write tiers (with `also`, in the same statement) and history and move grace
        timers, set-based. `at_commit`: the tiers and `also` are written with the commit,
        in its one statement, for a transaction that reads none of them back (a sweep's
        next chunk would)."""
        writes = (*also, store.tiers_upsert(list(self._tiers.values())))
        if at_commit:
            self.tx.write_at_commit(*writes)
        else:
            await store.save(self.tx.session, *writes)
        await self.tx.append(store.tier_history, self._history)
        await self._grace.apply(self.tx)


class ApplyBalanceChanges:
    """Applies a batch event by event in memory, then writes it with set-based statements."""

    def __init__(self, fx_rates: dict[str, Decimal]) -> None:
        self.fx_rates = fx_rates

    async def __call__(self, tx: Tx, events: list[Envelope[Any]]) -> None:
        ledger, books = await TierLedger.open(tx, (e.data.customer_id for e in events))
        accounts: dict[str, dict[str, Any]] = {}
        for event in events:
            data: BalanceChanged = event.data
            try:
                balance_cny = to_cny(data.balance, data.currency, self.fx_rates)
            except UnknownCurrency as exc:
                raise RejectedEvent(event, f"data.currency: {exc}", "unknown_currency") from None
            book = books[data.customer_id]
            update = AccountBalance(
                data.account_id,
                data.currency,
                data.balance,
                balance_cny,
                data.account_seq,
                # Applied, a future one would make every later posting without a sequence stale.
                booking_time(event, tx.now),
            )
            if not supersedes(update, book.accounts.get(data.account_id)):
                continue  # stale or out-of-order posting: a newer balance is already applied
            book.accounts[data.account_id] = update
            if abs(balance_cny) >= MONEY_LIMIT or abs(book.total_cny) >= MONEY_LIMIT:
                # Beyond what the ledger's amounts hold: refused, not retried as a fault.
                raise RejectedEvent(event, CNY_OUT_OF_RANGE, "invalid_field")
            accounts[data.account_id] = {
                "account_id": data.account_id,
                "customer_id": data.customer_id,
                "currency": data.currency,
                "balance": data.balance,
                "balance_cny": balance_cny,
                "account_seq": data.account_seq,
                "as_of": update.as_of,
                "txn_id": data.txn_id,
            }
            ledger.evaluate(book, cause="balance_changed", causation=event)
        today = bank_day(tx.now)
        touched = {row["customer_id"] for row in accounts.values()}
        await ledger.flush(
            store.accounts_upsert(list(accounts.values())),
            store.closing_upsert(
                [
                    {"customer_id": cid, "day": today, "total_cny": books[cid].total_cny}
                    for cid in sorted(touched)
                ]
            ),
            at_commit=True,
        )


async def end_grace(tx: Tx, due: list[DueTimer]) -> None:
    """A downgrade grace period ended: downgrade those still below their tier's bound."""
    ledger, books = await TierLedger.open(tx, (t.payload["customer_id"] for t in due))
    for book in books.values():
        ledger.evaluate(book, cause="grace_expired")
    await ledger.flush()


async def reevaluate(tx: Tx, due: list[DueTimer]) -> None:
    """Re-evaluate every customer in chunks (after a policy change; daily on the ADB basis)."""
    for timer in due:
        after = str(timer.payload.get("after", ""))
        ids = await store.customers_after(tx.session, after, SWEEP_CHUNK)
        ledger, books = await TierLedger.open(tx, ids)
        for book in books.values():
            ledger.evaluate(book, cause=str(timer.payload.get("cause", "policy_change")))
        await ledger.flush()
        if len(ids) == SWEEP_CHUNK:
            await tx.schedule(
                REEVALUATE,
                next_chunk_key(timer.key, ids[-1]),
                tx.now,
                timer.payload | {"after": ids[-1]},
            )
        elif ledger.policy.basis == "average_daily_balance":
            await schedule_daily_sweep(tx, ledger.version)


def next_chunk_key(key: str, after: str) -> str:
    """The timer key of a sweep's next chunk: the sweep's own key and where the chunk starts.
    (Appending to the firing chunk's key made it grow by one customer id a chunk, until
    Postgres refused to index it, 2,704 bytes, and the sweep stopped part way.)"""
    return f"{key.split('>', 1)[0]}>{after}"


async def schedule_daily_sweep(tx: Tx, version: int) -> None:
    """The average daily balance moves with the calendar: sweep once a day after midnight."""
    next_day = bank_day(tx.now) + timedelta(days=1)
    at = datetime.combine(next_day, time(0, 5), BANK_TZ)
    await tx.schedule(
        REEVALUATE, f"daily:{next_day.isoformat()}", at, {"cause": "daily_adb", "v": version}
    )


async def sweep_pending(session: AsyncSession) -> bool:
    """Is a policy re-evaluation sweep still waiting to run or to finish?"""
    pending = await session.scalar(
        select(func.count())
        .select_from(timers)
        .where(
            timers.c.kind == REEVALUATE,
            timers.c.fired_at.is_(None),
            timers.c.key.like("policy:%"),
        )
    )
    return bool(pending)


async def change_policy(tx: Tx, policy: TierPolicy, *, by: str) -> int:
    """Store a new policy and start re-evaluating every customer under it."""
    version = await store.save_policy(tx.session, policy, at=tx.now, by=by)
    await tx.schedule(REEVALUATE, f"policy:{version}", tx.now, {"cause": "policy_change"})
    return version
