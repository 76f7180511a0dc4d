"""Early warnings: raise a CallbackDue once per occurrence; the time-based rules' timers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from services.profile import store
from services.profile.domain import (
    Reason,
    WarningPolicy,
    assignee,
    decline_windows,
    is_new_customer_inactive,
    is_post_complaint_inactive,
    is_transaction_decline,
    local_day,
    local_month,
    next_local_midnight,
)
from shared.contracts import Envelope
from shared.contracts.events import ProfileCallbackDue
from shared.contracts.topics import PROFILE_CALLBACK_DUE
from shared.timers import DueTimer
from shared.unit_of_work import Tx

POST_COMPLAINT_TIMER = "post_complaint_inactivity"
NEW_CUSTOMER_TIMER = "new_customer_inactive"
DAILY_SWEEP_TIMER = "daily_sweep"
RATIO = Decimal("0.0001")
SWEEP_AT = timedelta(minutes=5)  # 00:05 Asia/Shanghai, once the previous day is complete


@dataclass(frozen=True)
class Warning:
    """One occurrence of a rule for a customer, with the numbers that triggered it."""

    customer_id: str
    reason: Reason
    occurrence: str  # with (customer, reason): the key that makes it fire once
    evidence: dict[str, Any]
    causation: Envelope[Any] | None = None


class WarningDesk:
    """Records warnings (duplicates of an occurrence drop out) and emits their CallbackDue."""

    def __init__(self, policy: WarningPolicy, fallback_team: str) -> None:
        self.policy = policy
        self.fallback_team = fallback_team

    async def raise_all(self, tx: Tx, warnings: list[Warning]) -> int:
        """Record and emit the warnings not raised before; returns how many were new."""
        if not warnings:
            return 0
        teams = await store.assignment_of(tx.session, (w.customer_id for w in warnings))
        due_at = tx.now + self.policy.callback_within
        rows, callbacks = [], {}
        for w in warnings:
            team = teams.get(w.customer_id)
            assignee_id, kind = assignee(
                team.relationship_manager_id if team else None,
                team.maintenance_team if team else None,
                self.fallback_team,
            )
            rows.append(
                {
                    "customer_id": w.customer_id,
                    "reason": w.reason,
                    "occurrence": w.occurrence,
                    "evidence": w.evidence,
                    "assignee_id": assignee_id,
                    "due_at": due_at,
                    "raised_at": tx.now,
                }
            )
            callbacks[(w.customer_id, w.reason, w.occurrence)] = (
                w,
                ProfileCallbackDue(
                    customer_id=w.customer_id,
                    reason=w.reason,
                    evidence=w.evidence,
                    assignee_id=assignee_id,
                    assignee_kind=kind,
                    due_at=due_at,
                ),
            )
        new = await store.record_warnings(tx.session, rows)
        for key, (w, callback) in callbacks.items():
            if key in new:
                tx.emit(PROFILE_CALLBACK_DUE, callback, key=w.customer_id, causation=w.causation)
        return len(new)


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


class TimeBasedRules:
    """Timer handlers of the rules that fire on the absence of something."""

    def __init__(self, desk: WarningDesk) -> None:
        self.desk = desk
        self.policy = desk.policy

    async def post_complaint_inactivity(self, tx: Tx, due: list[DueTimer]) -> None:
        """90 days after a complaint: no transaction since → win-back callback. Each
        complaint is judged on its own (DOMAIN: "after a complaint"): a later complaint
        does not put off an earlier one's callback."""
        signals = await store.signals_of(tx.session, (t.payload["customer_id"] for t in due))
        warnings = []
        for timer in due:
            customer_id = timer.payload["customer_id"]
            filed_at = datetime.fromisoformat(timer.payload["filed_at"])
            row = signals.get(customer_id)
            last_transaction_at = row.last_transaction_at if row else None
            if not is_post_complaint_inactive(filed_at, last_transaction_at):
                continue
            warnings.append(
                Warning(
                    customer_id,
                    "post_complaint_inactivity",
                    timer.payload["complaint_id"],
                    {
                        "complaint_id": timer.payload["complaint_id"],
                        "complaint_filed_at": filed_at.isoformat(),
                        "days_without_transaction": (tx.now - filed_at).days,
                        "threshold_days": self.policy.complaint_inactivity_days,
                        "last_transaction_at": _iso(last_transaction_at),
                    },
                )
            )
        await self.desk.raise_all(tx, warnings)

    async def new_customer_inactive(self, tx: Tx, due: list[DueTimer]) -> None:
        """One month after onboarding: no activity at all → welcome callback."""
        signals = await store.signals_of(tx.session, (t.payload["customer_id"] for t in due))
        warnings = []
        for timer in due:
            customer_id = timer.payload["customer_id"]
            onboarded_at = datetime.fromisoformat(timer.payload["onboarded_at"])
            row = signals.get(customer_id)
            last_activity_at = row.last_activity_at if row else None
            if not is_new_customer_inactive(onboarded_at, last_activity_at):
                continue
            warnings.append(
                Warning(
                    customer_id,
                    "new_customer_inactive",
                    local_day(onboarded_at).isoformat(),
                    {
                        "onboarded_at": onboarded_at.isoformat(),
                        "first_month_ended_at": timer.due_at.isoformat(),
                        "activities_since_onboarding": 0,
                        "last_activity_at": _iso(last_activity_at),
                    },
                )
            )
        await self.desk.raise_all(tx, warnings)

    async def daily_sweep(self, tx: Tx, due: list[DueTimer]) -> None:
        """Evaluate transaction_decline for every customer, then arm tomorrow's sweep."""
        month = local_month(tx.now)
        windows = decline_windows(month, self.policy)
        rows = await store.decline_candidates(
            tx.session,
            windows.earlier_from,
            windows.recent_from,
            windows.until,
            self.policy.decline_min_earlier,
            tx.now - timedelta(days=self.policy.decline_cooldown_days),
        )
        warnings = [
            Warning(
                r.customer_id,
                "transaction_decline",
                month.strftime("%Y-%m"),
                {
                    "recent_period": {
                        "from": windows.recent_from.isoformat(),
                        "until": windows.until.isoformat(),
                    },
                    "earlier_period": {
                        "from": windows.earlier_from.isoformat(),
                        "until": windows.recent_from.isoformat(),
                    },
                    "recent_transactions": int(r.recent),
                    "earlier_transactions": int(r.earlier),
                    "ratio": str((Decimal(int(r.recent)) / int(r.earlier)).quantize(RATIO)),
                    "threshold_ratio": str(self.policy.decline_ratio),
                },
            )
            for r in rows
            if is_transaction_decline(int(r.recent), int(r.earlier), self.policy)
        ]
        await self.desk.raise_all(tx, warnings)
        next_run = next_local_midnight(tx.now, after=SWEEP_AT)
        await tx.schedule(DAILY_SWEEP_TIMER, local_day(next_run).isoformat(), next_run)
