"""Behaviour signals: postings, channel activity and complaints → counts per customer, month
and day (set-based per batch), plus the browsing rule that fires on the views themselves."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.profile import store
from services.profile.domain import (
    find_browsing_span,
    local_day,
    local_month,
    rfm_scores,
    shift_month,
)
from services.profile.warnings import POST_COMPLAINT_TIMER, Warning, WarningDesk
from shared.contracts import Envelope
from shared.contracts.events import BalanceChanged, ComplaintUpdated, CustomerActivity
from shared.messaging.consumer import booking_time, refuse_future
from shared.unit_of_work import Tx

LATEST = (
    "last_transaction_at",
    "last_activity_at",
    "last_login_at",
    "last_wealth_purchase_at",
    "last_complaint_at",
)
COUNTS = ("logins", "product_views", "wealth_views", "purchases")
WEALTH = "wealth"


# A known customer with no behaviour recorded yet.
NO_SIGNALS = SimpleNamespace(**dict.fromkeys(LATEST), **dict.fromkeys(COUNTS, 0))


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


@dataclass
class SignalBatch:
    """What one batch of events adds, aggregated in memory before the set-based writes."""

    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    months: dict[tuple[str, date], list[Any]] = field(default_factory=dict)
    wealth: dict[tuple[str, date], list[int]] = field(default_factory=dict)
    complaints: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_view_days: dict[str, set[date]] = field(default_factory=lambda: defaultdict(set))
    view_events: dict[tuple[str, date], Envelope[Any]] = field(default_factory=dict)

    def customer(self, customer_id: str) -> dict[str, Any]:
        blank = {"customer_id": customer_id} | dict.fromkeys(LATEST) | dict.fromkeys(COUNTS, 0)
        return self.customers.setdefault(customer_id, blank)

    def touch(self, customer_id: str, name: str, at: datetime) -> None:
        row = self.customer(customer_id)
        row[name] = _later(row[name], at)

    def add_posting(self, event: Envelope[Any], at: datetime) -> None:
        """A posting booked at `at`."""
        data: BalanceChanged = event.data
        self.touch(data.customer_id, "last_transaction_at", at)
        self.touch(data.customer_id, "last_activity_at", at)
        month = self.months.setdefault((data.customer_id, local_month(at)), [0, Decimal("0.00")])
        month[0] += 1
        if data.currency == "CNY":  # turnover counts CNY postings only (no FX table here)
            month[1] += abs(data.delta)

    def add_activity(self, event: Envelope[Any], at: datetime) -> None:
        """Channel activity at `at` (its `data.at`)."""
        data: CustomerActivity = event.data
        cid = data.customer_id
        row = self.customer(cid)
        self.touch(cid, "last_activity_at", at)
        wealth = (data.product_type or "").lower() == WEALTH
        if data.activity == "login":
            row["logins"] += 1
            self.touch(cid, "last_login_at", at)
            return
        day = local_day(at)
        counts = self.wealth.setdefault((cid, day), [0, 0]) if wealth else None
        if data.activity == "product_view":
            row["product_views"] += 1
            if counts is not None:
                row["wealth_views"] += 1
                counts[0] += 1
                self.new_view_days[cid].add(day)
                self.view_events[(cid, day)] = event
        else:
            row["purchases"] += 1
            if counts is not None:
                counts[1] += 1
                self.touch(cid, "last_wealth_purchase_at", at)

    def add_complaint(self, event: Envelope[Any]) -> None:
        """A complaint counts from its first event (normally change == "filed"), dated when
        it was received (a desk may file it days later), else when that event occurred."""
        data: ComplaintUpdated = event.data
        at = data.received_at or event.occurred_at
        seen = self.complaints.get(data.complaint_id)
        if seen is None or at < seen["filed_at"]:
            self.complaints[data.complaint_id] = {
                "complaint_id": data.complaint_id,
                "customer_id": data.customer_id,
                "filed_at": at,
            }


class RecordSignals:
    """Batch handler of postings, channel activity and complaint updates."""

    def __init__(self, desk: WarningDesk) -> None:
        self.desk = desk
        self.policy = desk.policy

    async def __call__(self, tx: Tx, events: list[Envelope[Any]]) -> None:
        batch = SignalBatch()
        for event in events:
            # A time from the future would stand as the customer's latest activity for good,
            # and keep the inactivity rules from ever firing.
            if isinstance(event.data, BalanceChanged):
                batch.add_posting(event, booking_time(event, tx.now))
            elif isinstance(event.data, CustomerActivity):
                batch.add_activity(event, refuse_future(event, event.data.at, "data.at", tx.now))
            elif isinstance(event.data, ComplaintUpdated):
                batch.add_complaint(event)
        new_complaints = await store.record_complaints(tx.session, list(batch.complaints.values()))
        for c in new_complaints:
            batch.touch(c.customer_id, "last_complaint_at", c.filed_at)
        await store.add_signals(tx.session, list(batch.customers.values()))
        await store.add_monthly_transactions(
            tx.session,
            [
                {"customer_id": cid, "month": month, "transactions": n, "turnover_cny": turnover}
                for (cid, month), (n, turnover) in batch.months.items()
            ],
        )
        await store.add_wealth_days(
            tx.session,
            [
                {"customer_id": cid, "day": day, "views": views, "purchases": purchases}
                for (cid, day), (views, purchases) in batch.wealth.items()
            ],
        )
        for c in new_complaints:
            await tx.schedule(
                POST_COMPLAINT_TIMER,
                c.complaint_id,
                c.filed_at + timedelta(days=self.policy.complaint_inactivity_days),
                {
                    "customer_id": c.customer_id,
                    "complaint_id": c.complaint_id,
                    "filed_at": c.filed_at.isoformat(),
                },
            )
        await self._browsing_without_purchase(tx, batch)

    async def _browsing_without_purchase(self, tx: Tx, batch: SignalBatch) -> None:
        """Wealth views on N consecutive local days, no wealth purchase in the span."""
        if not batch.new_view_days:
            return
        reach = timedelta(days=self.policy.browsing_days - 1)
        all_days = [d for days in batch.new_view_days.values() for d in days]
        history = await store.wealth_history(
            tx.session, batch.new_view_days, min(all_days) - reach, max(all_days) + reach
        )
        alerted = await store.lock_browsing_alerts(tx.session, batch.new_view_days)
        warnings, newly_alerted = [], {}
        for cid, new_days in batch.new_view_days.items():
            views, purchases = history[cid]
            span = find_browsing_span(
                set(views), purchases, new_days, alerted.get(cid), self.policy
            )
            if span is None:
                continue
            days = [span.first_day + timedelta(days=k) for k in range(self.policy.browsing_days)]
            newly_alerted[cid] = span.last_day
            warnings.append(
                Warning(
                    cid,
                    "browsing_without_purchase",
                    span.first_day.isoformat(),
                    {
                        "view_days": [d.isoformat() for d in days],
                        "wealth_views_per_day": {d.isoformat(): views[d] for d in days},
                        "wealth_purchases_in_span": 0,
                        "cooldown_days": self.policy.browsing_cooldown_days,
                    },
                    causation=batch.view_events.get((cid, max(new_days & set(days)))),
                )
            )
        await store.set_browsing_alerts(tx.session, newly_alerted)
        await self.desk.raise_all(tx, warnings)


async def signals_view(
    session: AsyncSession, customer_id: str, now: datetime, months: int = 12
) -> dict[str, Any] | None:
    """The customer's behaviour signals, monthly counts and RFM scores (None if unknown)."""
    signals = (await store.signals_of(session, [customer_id])).get(customer_id)
    if signals is None:
        if await store.get_profile(session, customer_id) is None:
            return None
        signals = NO_SIGNALS
    current = local_month(now)
    since = shift_month(current, -(months - 1))
    monthly = await store.monthly_counts(session, customer_id, since)
    frequency = sum(int(m.transactions) for m in monthly)
    turnover = sum((Decimal(m.turnover_cny) for m in monthly), Decimal("0.00"))
    last = signals.last_transaction_at
    days_since = (now - last).days if last else None
    rfm = rfm_scores(days_since, frequency, turnover)
    warnings = await store.recent_warnings(session, customer_id)
    return {
        "customer_id": customer_id,
        "monthly_transactions": [
            {
                "month": m.month.strftime("%Y-%m"),
                "transactions": int(m.transactions),
                "turnover_cny": Decimal(m.turnover_cny),
            }
            for m in monthly
        ],
        "last_transaction_at": last,
        "last_activity_at": signals.last_activity_at,
        "last_login_at": signals.last_login_at,
        "logins": int(signals.logins),
        "product_views": int(signals.product_views),
        "wealth_product_views": int(signals.wealth_views),
        "purchases": int(signals.purchases),
        "last_wealth_purchase_at": signals.last_wealth_purchase_at,
        "last_complaint_at": signals.last_complaint_at,
        "rfm": {
            "recency": rfm.recency,
            "frequency": rfm.frequency,
            "monetary": rfm.monetary,
            "total": rfm.total,
            "days_since_last_transaction": days_since,
            "transactions_12m": frequency,
            "turnover_cny_12m": turnover,
        },
        "early_warnings": [
            {
                "reason": w.reason,
                "occurrence": w.occurrence,
                "evidence": w.evidence,
                "assignee_id": w.assignee_id,
                "due_at": w.due_at,
                "raised_at": w.raised_at,
            }
            for w in warnings
        ],
    }
