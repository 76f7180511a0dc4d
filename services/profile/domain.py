"""Customer profile rules (DOMAIN.md §3): contact validation, per-field merging, PATCH
permissions, behaviour signals, RFM scores and the early-warning rules. Pure, no I/O."""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")

# --- profile fields ------------------------------------------------------------------------

# Stored field name → name in the API / event contracts (used to name a field in errors).
FIELD_NAMES: dict[str, str] = {
    "name": "name",
    "mobile": "mobile",
    "wechat_openid": "wechat_openid",
    "language": "language",
    "preferred_channel": "preferred_channel",
    "consent_service": "consents.service",
    "consent_marketing": "consents.marketing",
    "quiet_hours_start": "quiet_hours.start",
    "quiet_hours_end": "quiet_hours.end",
    "tier": "tier",
    "maintenance_team": "maintenance_team",
    "relationship_manager_id": "relationship_manager_id",
    "branch_id": "branch_id",
    "onboarded_at": "onboarded_at",
}
PROFILE_FIELDS = tuple(FIELD_NAMES)
DEFAULTS: dict[str, Any] = {f: None for f in PROFILE_FIELDS} | {
    "language": "zh-CN",
    "preferred_channel": "sms",
    "consent_service": True,
    "consent_marketing": False,
    "quiet_hours_start": "21:00",
    "quiet_hours_end": "08:00",
}
LANGUAGES = ("zh-CN", "en")
CHANNELS = ("sms", "wechat")
# A CRM `null` clears these; for the others `null` means "not part of this update".
CLEARABLE = frozenset({"name", "mobile", "wechat_openid", "branch_id", "relationship_manager_id"})


class InvalidField(ValueError):
    """An input value breaks a profile rule; `field` is its API/contract name."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass
class Profile:
    """A customer's contact points and preferences, with when each field was last asserted."""

    customer_id: str
    values: dict[str, Any] = field(default_factory=lambda: dict(DEFAULTS))
    stamps: dict[str, datetime] = field(default_factory=dict)
    is_new: bool = True

    def copy(self) -> Profile:
        return replace(self, values=dict(self.values), stamps=dict(self.stamps))


def merge(profile: Profile, changes: Mapping[str, Any], at: datetime) -> list[str]:
    """Apply each field unless a later-stamped value is already there; the fields that changed.

    The stamp moves even when the value is equal: the value was re-asserted at `at`, so an
    older update arriving late must not overwrite it. Equal stamps: the later arrival wins.
    """
    changed = []
    for name, value in changes.items():
        stamp = profile.stamps.get(name)
        if stamp is not None and at < stamp:
            continue
        profile.stamps[name] = at
        if profile.values.get(name) != value:
            profile.values[name] = value
            changed.append(name)
    return changed


def check_consistency(profile: Profile, changes: Mapping[str, Any]) -> None:
    """WeChat as preferred channel needs an openid; names the field the update touched."""
    if profile.values["preferred_channel"] == "wechat" and not profile.values["wechat_openid"]:
        if "wechat_openid" in changes and "preferred_channel" not in changes:
            raise InvalidField(
                "wechat_openid", "cannot be removed while preferred_channel is wechat"
            )
        raise InvalidField("preferred_channel", "wechat requires a wechat_openid")


# --- validation ----------------------------------------------------------------------------

# [0-9], not \d: \d also matches full-width digits (U+FF10 to U+FF19, as a Chinese IME
# types them), which time.fromisoformat and the SMS gateways refuse downstream.
_MAINLAND_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_SEPARATORS = re.compile(r"[\s\-().]")
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


def normalise_mobile(raw: str) -> str:
    """E.164 form of a mobile number; a mainland 11-digit number becomes +86…."""
    compact = _SEPARATORS.sub("", raw)
    if _MAINLAND_MOBILE.fullmatch(compact):
        return "+86" + compact
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    elif compact.startswith("86") and _MAINLAND_MOBILE.fullmatch(compact[2:]):
        compact = "+" + compact
    if not _E164.fullmatch(compact):
        raise InvalidField("mobile", f"{raw!r} is not an E.164 number (e.g. +8613800138000)")
    if compact.startswith("+86") and not _MAINLAND_MOBILE.fullmatch(compact[3:]):
        raise InvalidField("mobile", f"{raw!r}: a +86 mobile number has 11 digits starting 1[3-9]")
    return compact


def parse_quiet_hours(start: str, end: str) -> tuple[str, str]:
    """A local HH:MM window (Asia/Shanghai); may cross midnight, must not be empty."""
    for name, value in (("start", start), ("end", end)):
        if not _HHMM.fullmatch(value):
            raise InvalidField(f"quiet_hours.{name}", f"{value!r} is not a HH:MM time")
    if start == end:
        raise InvalidField("quiet_hours", "start and end must differ")
    return start, end


def is_quiet(start: str, end: str, at: datetime) -> bool:
    """Is `at` inside the quiet window [start, end) in Asia/Shanghai (crossing midnight ok)?"""
    local = at.astimezone(SHANGHAI).time()
    begins, ends = time.fromisoformat(start), time.fromisoformat(end)
    if begins < ends:
        return begins <= local < ends
    return local >= begins or local < ends


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidField(name, f"{value!r} is not one of {', '.join(allowed)}")


def _flatten(fields: Mapping[str, Any]) -> dict[str, Any]:
    """API/contract shape (nested consents and quiet_hours) → stored field names."""
    flat: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "consents" and value is not None:
            for kind in ("service", "marketing"):
                if value.get(kind) is not None:
                    flat[f"consent_{kind}"] = value[kind]
        elif name == "quiet_hours" and value is not None:
            flat["quiet_hours_start"], flat["quiet_hours_end"] = parse_quiet_hours(
                value.get("start", ""), value.get("end", "")
            )
        elif name in FIELD_NAMES:
            flat[name] = value
    return flat


def profile_changes(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validated, normalised changes from the fields an update carries (explicitly set ones).

    Raises InvalidField naming the first bad field.
    """
    changes: dict[str, Any] = {}
    for name, value in _flatten(fields).items():
        if value is None and name not in CLEARABLE:
            continue
        if name == "mobile" and value is not None:
            value = normalise_mobile(value)
        elif name == "language":
            _check_choice("language", value, LANGUAGES)
        elif name == "preferred_channel":
            _check_choice("preferred_channel", value, CHANNELS)
        elif isinstance(value, str):
            value = value.strip() or None
            if value is None and name not in CLEARABLE:
                raise InvalidField(FIELD_NAMES[name], "must not be blank")
        changes[name] = value
    return changes


# --- PATCH permissions ---------------------------------------------------------------------

# Who may change what through PATCH /profiles/{id} (API field names; see the README).
CUSTOMER_EDITABLE = frozenset(
    {"preferred_channel", "language", "quiet_hours", "consents.marketing"}
)
STAFF_EDITABLE = frozenset(
    {"name", "mobile", "wechat_openid", "branch_id", "relationship_manager_id", "consents.service"}
)
EDITABLE_BY_ROLE: dict[str, frozenset[str]] = {
    "customer": CUSTOMER_EDITABLE,
    "staff": STAFF_EDITABLE,
    "admin": CUSTOMER_EDITABLE | STAFF_EDITABLE,
    "ops": frozenset(),
}


def requested_fields(body: Mapping[str, Any]) -> set[str]:
    """API names of the fields a PATCH body sets (consents split into its two consents)."""
    names = set()
    for name, value in body.items():
        if name == "consents" and isinstance(value, Mapping):
            names |= {f"consents.{k}" for k, v in value.items() if v is not None}
        else:
            names.add(name)
    return names


def forbidden_fields(role: str, requested: Iterable[str]) -> list[str]:
    """The requested fields this role may not change, sorted (empty when all allowed)."""
    allowed = EDITABLE_BY_ROLE.get(role, frozenset())
    return sorted(set(requested) - allowed)


# --- calendar helpers ----------------------------------------------------------------------


def local_day(at: datetime) -> date:
    """The Asia/Shanghai calendar day of an instant."""
    return at.astimezone(SHANGHAI).date()


def local_month(at: datetime) -> date:
    """The first day of the Asia/Shanghai calendar month of an instant."""
    return local_day(at).replace(day=1)


def shift_month(month: date, months: int) -> date:
    """First day of the month `months` away from `month`'s."""
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def add_months(at: datetime, months: int) -> datetime:
    """Same local time `months` later in Asia/Shanghai (day clamped to the month's end)."""
    local = at.astimezone(SHANGHAI)
    first = shift_month(local.date().replace(day=1), months)
    day = min(local.day, calendar.monthrange(first.year, first.month)[1])
    return local.replace(year=first.year, month=first.month, day=day)


def next_local_midnight(at: datetime, *, after: timedelta = timedelta(0)) -> datetime:
    """The next Asia/Shanghai midnight after `at` (plus `after`)."""
    tomorrow = local_day(at) + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), SHANGHAI) + after


# --- early-warning rules -------------------------------------------------------------------

Reason = Literal[
    "transaction_decline",
    "browsing_without_purchase",
    "post_complaint_inactivity",
    "new_customer_inactive",
]


@dataclass(frozen=True)
class WarningPolicy:
    """Thresholds of the early-warning rules (DOMAIN.md §3 defaults)."""

    decline_ratio: Decimal = Decimal("0.70")
    decline_min_earlier: int = 6
    decline_window_months: int = 6
    decline_cooldown_days: int = 180
    browsing_days: int = 3
    browsing_cooldown_days: int = 30
    complaint_inactivity_days: int = 90
    new_customer_months: int = 1
    callback_within: timedelta = timedelta(days=2)


@dataclass(frozen=True)
class DeclineWindows:
    """Two adjacent windows of whole Asia/Shanghai months before the evaluation month."""

    earlier_from: date
    recent_from: date
    until: date  # exclusive: the evaluation month itself is not complete yet


def decline_windows(evaluated_in: date, policy: WarningPolicy) -> DeclineWindows:
    """The last N complete months and the N before them, for a month of evaluation."""
    n = policy.decline_window_months
    until = evaluated_in.replace(day=1)
    return DeclineWindows(shift_month(until, -2 * n), shift_month(until, -n), until)


def is_transaction_decline(recent: int, earlier: int, policy: WarningPolicy) -> bool:
    """Recent transactions ≤ 70% of the earlier period's, which had at least 6."""
    return earlier >= policy.decline_min_earlier and recent <= earlier * policy.decline_ratio


@dataclass(frozen=True)
class BrowsingSpan:
    """Consecutive local days with wealth-product views and no wealth purchase."""

    first_day: date
    last_day: date


def find_browsing_span(
    view_days: set[date],
    purchase_days: set[date],
    new_view_days: Iterable[date],
    last_alert_day: date | None,
    policy: WarningPolicy,
) -> BrowsingSpan | None:
    """The earliest qualifying span that includes a newly seen view day, or None.

    A purchase on any day of the span cancels it; a span must end at least
    `browsing_cooldown_days` after the last span that raised a callback.
    """
    n = policy.browsing_days
    candidates = sorted(
        {day - timedelta(days=k) for day in new_view_days for k in range(n)}
    )  # every span start whose span contains a new day
    for first in candidates:
        days = [first + timedelta(days=k) for k in range(n)]
        if not all(d in view_days for d in days) or any(d in purchase_days for d in days):
            continue
        last = days[-1]
        if last_alert_day is not None and (last - last_alert_day).days < (
            policy.browsing_cooldown_days
        ):
            continue
        return BrowsingSpan(first, last)
    return None


def is_post_complaint_inactive(filed_at: datetime, last_transaction_at: datetime | None) -> bool:
    """No transaction since the complaint was filed."""
    return last_transaction_at is None or last_transaction_at <= filed_at


def is_new_customer_inactive(onboarded_at: datetime, last_activity_at: datetime | None) -> bool:
    """No activity (transaction, login, view or purchase) since onboarding."""
    return last_activity_at is None or last_activity_at < onboarded_at


AssigneeKind = Literal["employee", "department"]


def assignee(
    relationship_manager_id: str | None, maintenance_team: str | None, fallback_team: str
) -> tuple[str, AssigneeKind]:
    """The relationship manager when known, else the maintenance team (else the fallback)."""
    if relationship_manager_id:
        return relationship_manager_id, "employee"
    return maintenance_team or fallback_team, "department"


# --- RFM -----------------------------------------------------------------------------------

# Score 5..1: a value at or past the first threshold scores 5, the second 4, and so on.
RECENCY_DAYS = (7, 30, 90, 180)  # days since the last transaction (fewer is better)
FREQUENCY_TRANSACTIONS = (60, 24, 12, 4)  # transactions in the last 12 months
MONETARY_CNY = (Decimal(1_000_000), Decimal(200_000), Decimal(50_000), Decimal(10_000))


@dataclass(frozen=True)
class Rfm:
    """Recency, frequency and monetary scores (1 = weakest, 5 = strongest)."""

    recency: int
    frequency: int
    monetary: int

    @property
    def total(self) -> int:
        return self.recency + self.frequency + self.monetary


def rfm_scores(days_since_last: int | None, transactions: int, turnover: Decimal) -> Rfm:
    """RFM scores from the last 12 months of postings (see RECENCY_DAYS and friends)."""
    recency = 1
    if days_since_last is not None:
        recency = next(
            (5 - i for i, limit in enumerate(RECENCY_DAYS) if days_since_last <= limit), 1
        )
    frequency = next(
        (5 - i for i, low in enumerate(FREQUENCY_TRANSACTIONS) if transactions >= low), 1
    )
    monetary = next((5 - i for i, low in enumerate(MONETARY_CNY) if turnover >= low), 1)
    return Rfm(recency, frequency, monetary)
