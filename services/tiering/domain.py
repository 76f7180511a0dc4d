"""Deposit tiering rules (DOMAIN.md §1): pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from shared.contracts.events import MaintenanceTeam, Tier

TIERS: tuple[Tier, ...] = ("ordinary", "potential", "quality", "high_end")
MAINTENANCE_TEAM: dict[Tier, MaintenanceTeam] = {
    "ordinary": "branch_service",
    "potential": "customer_manager",
    "quality": "wealth_team",
    "high_end": "private_banking",
}
CENT = Decimal("0.01")
ZERO_CNY = Decimal("0.00")
BANK_TZ = ZoneInfo("Asia/Shanghai")
Direction = Literal["initial", "upgrade", "downgrade"]
Basis = Literal["balance", "average_daily_balance"]


@dataclass(frozen=True)
class TierPolicy:
    """How tiers are decided: lower bounds (inclusive, CNY), basis and downgrade grace."""

    potential_from: Decimal = Decimal("50000")
    quality_from: Decimal = Decimal("500000")
    high_end_from: Decimal = Decimal("3000000")
    basis: Basis = "balance"
    adb_days: int = 30
    downgrade_grace_days: int = 0

    def __post_init__(self) -> None:
        bounds = (self.potential_from, self.quality_from, self.high_end_from)
        if any(b < 0 for b in bounds) or not (bounds[0] < bounds[1] < bounds[2]):
            raise ValueError("tier thresholds must be non-negative and strictly increasing")
        if self.adb_days < 1:
            raise ValueError("adb_days must be at least 1")
        if self.downgrade_grace_days < 0:
            raise ValueError("downgrade_grace_days must not be negative")


def decide_tier(amount_cny: Decimal, policy: TierPolicy) -> Tier:
    """The tier an amount earns; each bound belongs to the higher tier."""
    if amount_cny >= policy.high_end_from:
        return "high_end"
    if amount_cny >= policy.quality_from:
        return "quality"
    if amount_cny >= policy.potential_from:
        return "potential"
    return "ordinary"


def direction(previous: Tier | None, new: Tier) -> Direction | None:
    """How the tier moved, or None when it did not."""
    if previous is None:
        return "initial"
    if previous == new:
        return None
    return "upgrade" if TIERS.index(new) > TIERS.index(previous) else "downgrade"


@dataclass(frozen=True)
class Evaluation:
    """The outcome of evaluating a customer: the tier to hold and the grace state."""

    tier: Tier
    move: Direction | None
    grace_until: datetime | None


def evaluate(
    current: Tier | None,
    grace_until: datetime | None,
    amount_cny: Decimal,
    policy: TierPolicy,
    now: datetime,
) -> Evaluation:
    """Upgrades at once; downgrades after the grace period the policy sets (default none)."""
    earned = decide_tier(amount_cny, policy)
    move = direction(current, earned)
    if current is None or move != "downgrade":
        return Evaluation(earned, move, None)  # initial, upgrade or unchanged: no grace
    if policy.downgrade_grace_days == 0 or (grace_until is not None and now >= grace_until):
        return Evaluation(earned, "downgrade", None)
    started = grace_until or now + timedelta(days=policy.downgrade_grace_days)
    return Evaluation(current, None, started)


class UnknownCurrency(ValueError):
    """No CNY rate is configured for the currency: never count it as zero."""


def to_cny(amount: Decimal, currency: str, rates: dict[str, Decimal]) -> Decimal:
    """Convert at the configured rate, rounded to cents (banker's rounding)."""
    if currency == "CNY":
        return amount.quantize(CENT, ROUND_HALF_EVEN)
    rate = rates.get(currency)
    if rate is None:
        raise UnknownCurrency(f"currency {currency!r} has no configured CNY rate")
    return (amount * rate).quantize(CENT, ROUND_HALF_EVEN)


def bank_day(moment: datetime) -> date:
    """The calendar day in the bank's time zone."""
    return moment.astimezone(BANK_TZ).date()


def average_daily_balance(closing: dict[date, Decimal], today: date, days: int) -> Decimal:
    """Mean of the closing totals of the last `days` days, today included.

    A day without a posting carries the previous closing total forward; days before the
    first known total count as zero (the customer held nothing with the bank then).
    """
    start = today - timedelta(days=days - 1)
    earlier = [d for d in closing if d < start]
    carried = closing[max(earlier)] if earlier else Decimal("0")
    total = Decimal("0")
    for offset in range(days):
        day = start + timedelta(days=offset)
        carried = closing.get(day, carried)
        total += carried
    return (total / days).quantize(CENT, ROUND_HALF_EVEN)


@dataclass(frozen=True)
class AccountBalance:
    """The latest applied balance of one deposit account."""

    account_id: str
    currency: str
    balance: Decimal
    balance_cny: Decimal
    account_seq: int | None
    as_of: datetime


def supersedes(new: AccountBalance, current: AccountBalance | None) -> bool:
    """Does `new` replace `current`? Stale updates (lower sequence, older time) do not."""
    if current is None:
        return True
    if new.account_seq is not None and current.account_seq is not None:
        return new.account_seq > current.account_seq
    return new.as_of >= current.as_of


@dataclass
class CustomerBook:
    """A customer's accounts, closing totals and tier while a batch is applied."""

    customer_id: str
    accounts: dict[str, AccountBalance] = field(default_factory=dict)
    closing: dict[date, Decimal] = field(default_factory=dict)
    tier: Tier | None = None
    grace_until: datetime | None = None

    @property
    def total_cny(self) -> Decimal:
        # A loop, not sum() over a generator: 0.27 against 0.82 µs for two accounts, and
        # every applied posting takes the total two or three times.
        total = ZERO_CNY
        for account in self.accounts.values():
            total += account.balance_cny
        return total

    def basis_amount(self, policy: TierPolicy, now: datetime) -> Decimal:
        """The amount the policy decides on: today's total or the average daily balance."""
        if policy.basis == "balance":
            return self.total_cny
        return average_daily_balance(
            self.closing | {bank_day(now): self.total_cny}, bank_day(now), policy.adb_days
        )
