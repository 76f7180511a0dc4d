"""Tiering rules: boundaries, totals, staleness, grace, average daily balance, FX."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from services.tiering.domain import (
    AccountBalance,
    CustomerBook,
    TierPolicy,
    UnknownCurrency,
    average_daily_balance,
    bank_day,
    decide_tier,
    direction,
    evaluate,
    supersedes,
    to_cny,
)

pytestmark = pytest.mark.unit

POLICY = TierPolicy()
NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
D = Decimal


@pytest.mark.parametrize(
    ("total", "tier"),
    [
        ("0.00", "ordinary"),
        ("49999.99", "ordinary"),
        ("50000.00", "potential"),
        ("499999.99", "potential"),
        ("500000.00", "quality"),
        ("2999999.99", "quality"),
        ("3000000.00", "high_end"),
        ("-10.00", "ordinary"),  # an overdrawn total is still ordinary
    ],
)
def test_boundaries_belong_to_the_higher_tier(total: str, tier: str):
    assert decide_tier(D(total), POLICY) == tier


@pytest.mark.parametrize(
    ("previous", "new", "expected"),
    [
        (None, "ordinary", "initial"),
        ("ordinary", "potential", "upgrade"),
        ("high_end", "quality", "downgrade"),
        ("quality", "quality", None),
    ],
)
def test_direction(previous, new, expected):
    assert direction(previous, new) == expected


@pytest.mark.parametrize(
    "bounds",
    [("100", "100", "200"), ("300", "200", "400"), ("-1", "10", "20")],
)
def test_policy_thresholds_must_increase_and_be_non_negative(bounds):
    with pytest.raises(ValueError, match="strictly increasing"):
        TierPolicy(*(D(b) for b in bounds))


def account(account_id: str, cny: str, seq: int | None = None, at: datetime = NOW):
    return AccountBalance(account_id, "CNY", D(cny), D(cny), seq, at)


def test_total_is_the_sum_of_each_accounts_latest_balance():
    book = CustomerBook("C1")
    for acc in (account("A", "30000.00"), account("B", "19999.99"), account("C", "0.01")):
        book.accounts[acc.account_id] = acc
    assert book.total_cny == D("50000.00")
    assert decide_tier(book.total_cny, POLICY) == "potential"


def test_lower_sequence_is_stale_even_when_it_arrives_later():
    current = account("A", "100", seq=5)
    assert not supersedes(account("A", "999", seq=4), current)
    assert not supersedes(account("A", "999", seq=5), current)  # duplicate
    assert supersedes(account("A", "1", seq=6), current)


def test_without_sequence_the_older_posting_is_stale():
    current = account("A", "100", at=NOW)
    assert not supersedes(account("A", "999", at=NOW - timedelta(seconds=1)), current)
    assert supersedes(account("A", "1", at=NOW + timedelta(seconds=1)), current)
    assert supersedes(account("A", "1"), None)


def test_upgrade_is_immediate_even_with_a_grace_period():
    policy = TierPolicy(downgrade_grace_days=7)
    outcome = evaluate("ordinary", None, D("500000"), policy, NOW)
    assert (outcome.tier, outcome.move, outcome.grace_until) == ("quality", "upgrade", None)


def test_downgrade_is_immediate_without_grace():
    outcome = evaluate("quality", None, D("10"), POLICY, NOW)
    assert (outcome.tier, outcome.move) == ("ordinary", "downgrade")


def test_downgrade_waits_out_the_grace_period():
    policy = TierPolicy(downgrade_grace_days=7)
    started = evaluate("quality", None, D("100000"), policy, NOW)
    assert (started.tier, started.move) == ("quality", None)
    assert started.grace_until == NOW + timedelta(days=7)

    # Later in the period the grace end stays where it was.
    later = evaluate("quality", started.grace_until, D("10"), policy, NOW + timedelta(days=3))
    assert (later.tier, later.move, later.grace_until) == ("quality", None, started.grace_until)

    ended = evaluate("quality", started.grace_until, D("100000"), policy, NOW + timedelta(days=7))
    assert (ended.tier, ended.move, ended.grace_until) == ("potential", "downgrade", None)


def test_recovery_during_grace_cancels_it():
    policy = TierPolicy(downgrade_grace_days=7)
    grace_until = NOW + timedelta(days=7)
    outcome = evaluate("quality", grace_until, D("500000"), policy, NOW + timedelta(days=1))
    assert (outcome.tier, outcome.move, outcome.grace_until) == ("quality", None, None)


def test_average_daily_balance_carries_totals_forward():
    today = date(2026, 11, 30)
    closing = {
        date(2026, 11, 1): D("900"),  # before the window: carried into its first day
        date(2026, 11, 28): D("3000"),
        today: D("6000"),
    }
    # 10-day window 21..30: 7 days at 900, 2 days at 3000, 1 day at 6000.
    expected = (7 * D("900") + 2 * D("3000") + D("6000")) / 10
    assert average_daily_balance(closing, today, 10) == expected.quantize(D("0.01"))


def test_average_daily_balance_counts_days_before_the_first_deposit_as_zero():
    today = date(2026, 11, 30)
    assert average_daily_balance({today: D("300000")}, today, 30) == D("10000.00")


def test_adb_basis_decides_on_the_average_not_todays_balance():
    policy = TierPolicy(basis="average_daily_balance", adb_days=30)
    book = CustomerBook("C1", accounts={"A": account("A", "600000")})
    today = bank_day(NOW)
    book.closing = {today - timedelta(days=29): D("0")}
    assert book.basis_amount(policy, NOW) == D("20000.00")
    assert decide_tier(book.basis_amount(policy, NOW), policy) == "ordinary"
    assert decide_tier(book.basis_amount(POLICY, NOW), POLICY) == "quality"


def test_bank_day_is_shanghai_calendar_day():
    assert bank_day(datetime(2026, 11, 22, 16, 30, tzinfo=UTC)) == date(2026, 11, 23)


def test_foreign_currency_counts_at_the_configured_rate():
    rates = {"USD": D("7.10")}
    assert to_cny(D("10000.00"), "USD", rates) == D("71000.00")
    assert to_cny(D("0.005"), "CNY", rates) == D("0.00")  # banker's rounding


def test_unknown_currency_is_never_zero():
    with pytest.raises(UnknownCurrency, match="'XYZ' has no configured CNY rate"):
        to_cny(D("1"), "XYZ", {})
