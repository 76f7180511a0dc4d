"""Delivery policy: consent, channel choice and fallback, quiet hours, caps, retries."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from services.notifications.domain import (
    BANK_TZ,
    AttemptResult,
    Contact,
    Defer,
    Delivered,
    Fallback,
    GiveUp,
    Pending,
    QuietWindow,
    Retry,
    RetryPolicy,
    Send,
    Suppress,
    Undeliverable,
    after_attempt,
    channel_order,
    counts_against_cap,
    decide,
    local_day,
    next_channel,
    within_daily_cap,
)

pytestmark = pytest.mark.unit

NIGHT = QuietWindow(time(21), time(8))


def shanghai(hour: int, minute: int = 0, day: int = 22) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=BANK_TZ)


def customer(**fields) -> Contact:
    values: dict[str, Any] = {
        "kind": "customer",
        "id": "C1",
        "mobile": "+8613800138000",
        "wechat_openid": "oABC",
        "preferred_channel": "wechat",
        "quiet_hours": NIGHT,
    }
    return Contact(**(values | fields))


SERVICE = Pending("service", urgent=False)


# --- channel choice and fallback -------------------------------------------------------


def test_wechat_first_for_a_customer_who_prefers_it_then_sms():
    assert channel_order(customer()) == ["wechat", "sms"]


def test_no_openid_means_sms_even_when_wechat_is_preferred():
    assert channel_order(customer(wechat_openid=None)) == ["sms"]


def test_sms_preference_never_falls_back_to_wechat():
    assert channel_order(customer(preferred_channel="sms")) == ["sms"]


def test_next_channel_skips_the_ones_given_up_on():
    assert next_channel(customer(), {"wechat"}) == "sms"
    assert next_channel(customer(), {"wechat", "sms"}) is None


# --- decisions -------------------------------------------------------------------------


def test_marketing_needs_marketing_consent():
    marketing = Pending("marketing", urgent=False)
    noon = shanghai(12)
    assert decide(marketing, "customer", customer(), noon) == Suppress("no_marketing_consent")
    assert decide(marketing, "customer", customer(marketing_consent=True), noon) == Send("wechat")


def test_service_messages_respect_a_withdrawn_service_consent():
    assert decide(SERVICE, "customer", customer(service_consent=False), shanghai(12)) == Suppress(
        "no_service_consent"
    )


def test_a_customer_without_contact_points_is_suppressed_but_staff_fail():
    nowhere = customer(mobile=None, wechat_openid=None)
    assert decide(SERVICE, "customer", nowhere, shanghai(12)) == Suppress("no_contact_point")
    staff = Contact(kind="employee", id="E1")
    assert decide(Pending("service", True), "employee", staff, shanghai(12)) == Undeliverable(
        "no_contact_point"
    )
    assert isinstance(
        decide(Pending("service", True), "department", None, shanghai(3)), Undeliverable
    )


def test_non_urgent_customer_messages_wait_for_the_quiet_hours_to_end():
    decision = decide(SERVICE, "customer", customer(), shanghai(23, 30))
    assert isinstance(decision, Defer)
    assert decision.until == shanghai(8, day=23)
    assert "08:00" in decision.reason


def test_staff_messages_are_urgent_and_ignore_quiet_hours():
    staff = Contact(kind="employee", id="E1", mobile="+8613800000001", quiet_hours=NIGHT)
    assert decide(Pending("service", True), "employee", staff, shanghai(2)) == Send("sms")


def test_urgent_customer_messages_ignore_quiet_hours():
    assert decide(Pending("service", True), "customer", customer(), shanghai(2)) == Send("wechat")


# --- quiet-hour arithmetic -------------------------------------------------------------


@pytest.mark.parametrize(
    ("hour", "minute", "inside"),
    [
        (20, 59, False),
        (21, 0, True),
        (23, 59, True),
        (0, 0, True),
        (7, 59, True),
        (8, 0, False),
        (12, 0, False),
    ],
)
def test_a_window_crossing_midnight(hour, minute, inside):
    assert NIGHT.contains(shanghai(hour, minute)) is inside


def test_a_window_within_one_day():
    lunch = QuietWindow(time(12), time(14))
    assert lunch.contains(shanghai(13)) and not lunch.contains(shanghai(14))
    assert not lunch.contains(shanghai(11, 59))
    assert lunch.opens_after(shanghai(13)) == shanghai(14)


def test_the_window_reads_the_shanghai_clock_whatever_the_zone_of_the_moment():
    utc_afternoon = datetime(2026, 11, 22, 14, 30, tzinfo=UTC)  # 22:30 in Shanghai
    assert NIGHT.contains(utc_afternoon)
    assert NIGHT.opens_after(utc_afternoon) == shanghai(8, day=23)


def test_after_midnight_the_window_opens_the_same_morning():
    assert NIGHT.opens_after(shanghai(1, 15, day=23)) == shanghai(8, day=23)


def test_equal_start_and_end_means_no_quiet_hours():
    assert not QuietWindow(time(8), time(8)).contains(shanghai(8))


def test_parse_reads_hh_mm():
    assert QuietWindow.parse("21:30", "07:15") == QuietWindow(time(21, 30), time(7, 15))


# --- caps ------------------------------------------------------------------------------


def test_the_daily_cap_counts_non_urgent_customer_messages_only():
    assert counts_against_cap(customer(), urgent=False)
    assert not counts_against_cap(customer(), urgent=True)
    assert not counts_against_cap(Contact(kind="employee", id="E1"), urgent=False)


def test_within_the_daily_cap():
    assert within_daily_cap(4, 5)
    assert not within_daily_cap(5, 5)
    assert not within_daily_cap(0, 0)


def test_the_cap_day_is_the_shanghai_calendar_day():
    late_utc = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)  # 01:00 on the 23rd in Shanghai
    assert local_day(late_utc).day == 23


# --- retries and fallback after an attempt ---------------------------------------------

POLICY = RetryPolicy(max_attempts=3, base_seconds=10, cap_seconds=25)


def step(outcome, channel="wechat", attempts=1, contact=None, exhausted=frozenset()):
    return after_attempt(
        AttemptResult(outcome, "p", error="boom"),
        channel=channel,
        channel_attempts=attempts,
        contact=contact or customer(),
        exhausted=set(exhausted),
        policy=POLICY,
    )


def test_delivered_is_done():
    assert step("delivered") == Delivered("wechat")


def test_transient_failures_are_retried_until_the_last_attempt_then_fall_back():
    assert isinstance(step("transient", attempts=1), Retry)
    assert isinstance(step("transient", attempts=2), Retry)
    assert step("transient", attempts=3) == Fallback("sms")


def test_a_permanent_wechat_error_falls_back_to_sms_at_once():
    assert step("permanent", attempts=1) == Fallback("sms")


def test_a_permanent_sms_error_fails_at_once_as_delivery_failed():
    outcome = step("permanent", channel="sms", exhausted={"wechat"})
    assert isinstance(outcome, GiveUp) and outcome.alert_kind == "delivery_failed"


def test_exhausted_retries_on_the_last_channel_mean_provider_down():
    outcome = step("transient", channel="sms", attempts=3, exhausted={"wechat"})
    assert isinstance(outcome, GiveUp) and outcome.alert_kind == "provider_down"


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(7)
    delays = [POLICY.delay(n, rng) for n in (1, 2, 3, 4)]
    assert timedelta(seconds=5) <= delays[0] <= timedelta(seconds=10)
    assert timedelta(seconds=10) <= delays[1] <= timedelta(seconds=20)
    assert all(d <= timedelta(seconds=25) for d in delays)
    assert len({POLICY.delay(1, rng) for _ in range(5)}) > 1  # jittered
