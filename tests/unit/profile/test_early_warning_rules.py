"""Early-warning rules and RFM scoring on hand-built histories."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from services.profile.domain import (
    SHANGHAI,
    BrowsingSpan,
    WarningPolicy,
    add_months,
    assignee,
    decline_windows,
    find_browsing_span,
    is_new_customer_inactive,
    is_post_complaint_inactive,
    is_transaction_decline,
    local_day,
    local_month,
    next_local_midnight,
    rfm_scores,
)

pytestmark = pytest.mark.unit

POLICY = WarningPolicy()
D1 = date(2026, 11, 10)


def days(*offsets: int) -> set[date]:
    return {D1 + timedelta(days=k) for k in offsets}


# --- transaction_decline -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recent", "earlier", "fires"),
    [
        (7, 10, True),  # exactly 70%
        (8, 10, False),  # 80%
        (0, 10, True),
        (4, 6, True),  # 66.7% with exactly the minimum of 6 earlier transactions
        (5, 6, False),  # 83%
        (0, 5, False),  # too few earlier transactions to judge
        (70, 100, True),
        (71, 100, False),
    ],
)
def test_transaction_decline_threshold(recent: int, earlier: int, fires: bool) -> None:
    assert is_transaction_decline(recent, earlier, POLICY) is fires


def test_decline_windows_are_whole_months_before_the_evaluation_month() -> None:
    windows = decline_windows(date(2026, 11, 22), POLICY)
    assert windows.until == date(2026, 11, 1)
    assert windows.recent_from == date(2026, 5, 1)
    assert windows.earlier_from == date(2025, 11, 1)


# --- browsing_without_purchase -------------------------------------------------------------


def test_views_on_exactly_three_consecutive_days_fire() -> None:
    span = find_browsing_span(days(0, 1, 2), set(), days(2), None, POLICY)
    assert span == BrowsingSpan(D1, D1 + timedelta(days=2))


def test_views_on_two_days_do_not_fire() -> None:
    assert find_browsing_span(days(0, 1), set(), days(1), None, POLICY) is None


def test_days_must_be_consecutive() -> None:
    assert find_browsing_span(days(0, 1, 3), set(), days(3), None, POLICY) is None


def test_a_wealth_purchase_on_day_two_cancels() -> None:
    assert find_browsing_span(days(0, 1, 2), days(1), days(2), None, POLICY) is None


def test_a_purchase_outside_the_span_does_not_cancel() -> None:
    span = find_browsing_span(days(1, 2, 3), days(0), days(3), None, POLICY)
    assert span == BrowsingSpan(D1 + timedelta(days=1), D1 + timedelta(days=3))


def test_late_arriving_first_day_completes_the_span() -> None:
    span = find_browsing_span(days(0, 1, 2), set(), days(0), None, POLICY)
    assert span == BrowsingSpan(D1, D1 + timedelta(days=2))


def test_thirty_day_cooldown() -> None:
    last_alert = D1 + timedelta(days=2)
    later = {last_alert + timedelta(days=k) for k in (27, 28, 29)}  # span ends 29 days later
    assert find_browsing_span(later, set(), later, last_alert, POLICY) is None
    later = {last_alert + timedelta(days=k) for k in (28, 29, 30)}  # exactly 30 days later
    span = find_browsing_span(later, set(), later, last_alert, POLICY)
    assert span is not None and span.last_day == last_alert + timedelta(days=30)


def test_a_fourth_consecutive_day_does_not_fire_again() -> None:
    assert (
        find_browsing_span(days(0, 1, 2, 3), set(), days(3), D1 + timedelta(days=2), POLICY) is None
    )


# --- post_complaint_inactivity and new_customer_inactive -----------------------------------

FILED = datetime(2026, 8, 1, 2, 0, tzinfo=UTC)


def test_post_complaint_inactivity() -> None:
    assert is_post_complaint_inactive(FILED, None)
    assert is_post_complaint_inactive(FILED, FILED - timedelta(days=3))
    assert not is_post_complaint_inactive(FILED, FILED + timedelta(days=89))


def test_new_customer_inactive() -> None:
    assert is_new_customer_inactive(FILED, None)
    assert is_new_customer_inactive(FILED, FILED - timedelta(hours=1))
    assert not is_new_customer_inactive(FILED, FILED + timedelta(days=3))


def test_first_month_ends_on_the_same_local_day_next_month_clamped() -> None:
    onboarded = datetime(2026, 1, 31, 10, 0, tzinfo=SHANGHAI)
    assert add_months(onboarded, 1) == datetime(2026, 2, 28, 10, 0, tzinfo=SHANGHAI)
    assert add_months(datetime(2026, 12, 15, 9, 0, tzinfo=SHANGHAI), 1).date() == date(2027, 1, 15)


# --- calendar, assignment, RFM -------------------------------------------------------------


def test_days_and_months_are_asia_shanghai() -> None:
    late_utc = datetime(2026, 10, 31, 16, 30, tzinfo=UTC)  # 00:30 on 1 November in Shanghai
    assert local_day(late_utc) == date(2026, 11, 1)
    assert local_month(late_utc) == date(2026, 11, 1)
    assert next_local_midnight(late_utc) == datetime(2026, 11, 2, tzinfo=SHANGHAI)


def test_assignee_is_the_relationship_manager_else_the_maintenance_team() -> None:
    assert assignee("E042", "wealth_team", "customer_manager") == ("E042", "employee")
    assert assignee(None, "wealth_team", "customer_manager") == ("wealth_team", "department")
    assert assignee(None, None, "customer_manager") == ("customer_manager", "department")


@pytest.mark.parametrize(
    ("days_since", "transactions", "turnover", "expected"),
    [
        (7, 60, Decimal(1_000_000), (5, 5, 5)),
        (8, 59, Decimal("999999.99"), (4, 4, 4)),
        (90, 12, Decimal(50_000), (3, 3, 3)),
        (180, 4, Decimal(10_000), (2, 2, 2)),
        (181, 3, Decimal("9999.99"), (1, 1, 1)),
        (None, 0, Decimal(0), (1, 1, 1)),
    ],
)
def test_rfm_scores(days_since, transactions, turnover, expected) -> None:
    rfm = rfm_scores(days_since, transactions, turnover)
    assert (rfm.recency, rfm.frequency, rfm.monetary) == expected
    assert rfm.total == sum(expected)
