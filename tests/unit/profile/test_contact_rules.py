"""Profile validation, per-field merging, PATCH permissions and masking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.profile.domain import (
    InvalidField,
    Profile,
    check_consistency,
    forbidden_fields,
    is_quiet,
    merge,
    normalise_mobile,
    parse_quiet_hours,
    profile_changes,
    requested_fields,
)
from shared.logs import mask_mobile, mask_openid

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("13800138000", "+8613800138000"),
        ("138 0013 8000", "+8613800138000"),
        ("138-0013-8000", "+8613800138000"),
        ("+8613800138000", "+8613800138000"),
        ("8613800138000", "+8613800138000"),
        ("008613800138000", "+8613800138000"),
        ("+85291234567", "+85291234567"),
        ("+447911123456", "+447911123456"),
    ],
)
def test_mobile_numbers_are_normalised_to_e164(raw: str, e164: str) -> None:
    assert normalise_mobile(raw) == e164


@pytest.mark.parametrize(
    "raw",
    [
        "12345",
        "1380013800",
        "23800138000",
        "+86138001380001",
        "+8612800138000",
        "phone",
        "+0123",
        # full-width digits, as a Chinese IME types them
        "13\uff18\uff10\uff10\uff11\uff13\uff18\uff10\uff10\uff10",
        "+\uff14\uff142079460000",
    ],
)
def test_invalid_mobile_numbers_name_the_field(raw: str) -> None:
    with pytest.raises(InvalidField) as exc:
        normalise_mobile(raw)
    assert exc.value.field == "mobile"


def shanghai(hour: int, minute: int = 0) -> datetime:
    """An instant given by its Asia/Shanghai wall-clock time (UTC+8) on 2026-11-01."""
    return datetime(2026, 11, 1, hour, minute, tzinfo=UTC) - timedelta(hours=8)


def test_quiet_hours_window_crossing_midnight() -> None:
    assert is_quiet("21:00", "08:00", shanghai(21, 0))
    assert is_quiet("21:00", "08:00", shanghai(23, 59))
    assert is_quiet("21:00", "08:00", shanghai(0, 0))
    assert is_quiet("21:00", "08:00", shanghai(7, 59))
    assert not is_quiet("21:00", "08:00", shanghai(8, 0))
    assert not is_quiet("21:00", "08:00", shanghai(20, 59))
    assert not is_quiet("21:00", "08:00", shanghai(12, 0))


def test_quiet_hours_window_within_one_day() -> None:
    noon_shanghai = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)
    assert is_quiet("12:00", "14:00", noon_shanghai)
    assert not is_quiet("12:00", "14:00", noon_shanghai + timedelta(hours=2))


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("25:00", "08:00", "quiet_hours.start"),
        ("21:00", "8:00", "quiet_hours.end"),
        ("21:00", "21:00", "quiet_hours"),
        ("21:0\uff10", "08:00", "quiet_hours.start"),  # a full-width digit
        ("21:00", "\uff108:00", "quiet_hours.end"),
    ],
)
def test_invalid_quiet_hours_name_the_field(start: str, end: str, field: str) -> None:
    with pytest.raises(InvalidField) as exc:
        parse_quiet_hours(start, end)
    assert exc.value.field == field


def test_language_and_channel_must_be_known() -> None:
    with pytest.raises(InvalidField) as exc:
        profile_changes({"language": "fr"})
    assert exc.value.field == "language"
    with pytest.raises(InvalidField) as exc:
        profile_changes({"preferred_channel": "email"})
    assert exc.value.field == "preferred_channel"


def test_changes_flatten_consents_and_quiet_hours_and_clear_only_contact_fields() -> None:
    changes = profile_changes(
        {
            "consents": {"marketing": True},
            "quiet_hours": {"start": "22:30", "end": "07:00"},
            "wechat_openid": None,
            "language": None,
        }
    )
    assert changes == {
        "consent_marketing": True,
        "quiet_hours_start": "22:30",
        "quiet_hours_end": "07:00",
        "wechat_openid": None,
    }


def test_later_field_wins_and_older_update_cannot_overwrite_it() -> None:
    profile = Profile("C1")
    assert merge(profile, {"mobile": "+8613800000002"}, T0 + timedelta(hours=2)) == ["mobile"]
    changed = merge(profile, {"mobile": "+8613800000001", "language": "en"}, T0)
    assert changed == ["language"]
    assert profile.values["mobile"] == "+8613800000002"
    assert profile.values["language"] == "en"


def test_reasserting_a_value_moves_its_stamp_without_a_change() -> None:
    profile = Profile("C1")
    merge(profile, {"name": "A"}, T0)
    assert merge(profile, {"name": "A"}, T0 + timedelta(hours=3)) == []
    assert merge(profile, {"name": "B"}, T0 + timedelta(hours=1)) == []
    assert profile.values["name"] == "A"


def test_wechat_channel_requires_an_openid() -> None:
    profile = Profile("C1")
    merge(profile, {"preferred_channel": "wechat"}, T0)
    with pytest.raises(InvalidField) as exc:
        check_consistency(profile, {"preferred_channel": "wechat"})
    assert exc.value.field == "preferred_channel"
    merge(profile, {"wechat_openid": "oABC12345"}, T0)
    check_consistency(profile, {"wechat_openid": "oABC12345"})
    merge(profile, {"wechat_openid": None}, T0)
    with pytest.raises(InvalidField) as exc:
        check_consistency(profile, {"wechat_openid": None})
    assert exc.value.field == "wechat_openid"


def test_customer_may_change_preferences_but_not_contact_data() -> None:
    body = {"preferred_channel": "sms", "consents": {"marketing": False}, "quiet_hours": {}}
    assert forbidden_fields("customer", requested_fields(body)) == []
    assert forbidden_fields("customer", requested_fields({"mobile": "x"})) == ["mobile"]
    assert forbidden_fields("customer", requested_fields({"consents": {"service": False}})) == [
        "consents.service"
    ]


def test_staff_may_change_contact_data_but_not_the_customers_preferences() -> None:
    assert forbidden_fields("staff", requested_fields({"mobile": "x", "name": "y"})) == []
    assert forbidden_fields("staff", requested_fields({"consents": {"marketing": True}})) == [
        "consents.marketing"
    ]
    assert forbidden_fields("admin", requested_fields({"mobile": "x", "language": "en"})) == []
    assert forbidden_fields("ops", requested_fields({"language": "en"})) == ["language"]


def test_masking_keeps_enough_to_recognise() -> None:
    assert mask_mobile("+8613800138000") == "+86138****8000"
    assert mask_mobile("+447911123456") == "+447****3456"
    assert mask_mobile(None) is None
    assert mask_openid("oWx1234567890abc") == "oWx1****abc"
    assert mask_openid("short") == "****"
