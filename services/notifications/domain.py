"""Delivery policy (DOMAIN.md §4): consent, channel and fallback, quiet hours, caps, retries.

Pure functions and dataclasses: no I/O. Times are timezone-aware; the calendar (quiet
hours, the day of a daily cap) is Asia/Shanghai.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from shared.contracts.events import Channel, Language

BANK_TZ = ZoneInfo("Asia/Shanghai")

RecipientKind = Literal["customer", "employee", "department"]
Category = Literal["service", "marketing"]
Outcome = Literal["delivered", "transient", "permanent"]


# --- recipients ------------------------------------------------------------------------


@dataclass(frozen=True)
class QuietWindow:
    """Local wall-clock window in which non-urgent messages wait; may cross midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, start: str, end: str) -> QuietWindow:
        return cls(time.fromisoformat(start), time.fromisoformat(end))

    @property
    def empty(self) -> bool:
        return self.start == self.end

    def contains(self, moment: datetime) -> bool:
        """Is `moment` (any zone) inside the window, read on the bank's local clock?"""
        if self.empty:
            return False
        local = moment.astimezone(BANK_TZ).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # crosses midnight

    def opens_after(self, moment: datetime) -> datetime:
        """When the window next ends (messages may go out) at or after `moment`."""
        local = moment.astimezone(BANK_TZ)
        candidate = datetime.combine(local.date(), self.end, tzinfo=BANK_TZ)
        if candidate <= local:
            candidate += timedelta(days=1)
        return candidate


@dataclass(frozen=True)
class Contact:
    """Where and how a recipient is reached, and what they agreed to."""

    kind: RecipientKind
    id: str
    name: str | None = None
    mobile: str | None = None
    wechat_openid: str | None = None
    language: Language = "zh-CN"
    preferred_channel: Channel = "sms"
    service_consent: bool = True
    marketing_consent: bool = False
    quiet_hours: QuietWindow | None = None

    @property
    def is_customer(self) -> bool:
        return self.kind == "customer"


# --- channel choice and fallback -------------------------------------------------------


def channel_order(contact: Contact) -> list[Channel]:
    """Channels to try, best first: the preferred one, then SMS as the fallback."""
    order: list[Channel] = []
    if contact.preferred_channel == "wechat" and contact.wechat_openid:
        order.append("wechat")
    if contact.mobile:
        order.append("sms")
    return order


def next_channel(contact: Contact, exhausted: set[str]) -> Channel | None:
    """The first channel not yet given up on, or None when none is left."""
    for channel in channel_order(contact):
        if channel not in exhausted:
            return channel
    return None


def address_for(contact: Contact, channel: Channel) -> str:
    """The mobile number or openid a channel sends to."""
    address = contact.wechat_openid if channel == "wechat" else contact.mobile
    if not address:
        raise ValueError(f"{contact.kind} {contact.id} has no {channel} address")
    return address


# --- the decision before sending -------------------------------------------------------


@dataclass(frozen=True)
class Send:
    channel: Channel


@dataclass(frozen=True)
class Defer:
    until: datetime
    reason: str


@dataclass(frozen=True)
class Suppress:
    """Not sent, by policy (consent, no contact point, cap): nothing for ops to do."""

    reason: str


@dataclass(frozen=True)
class Undeliverable:
    """A staff message with nowhere to go: it fails and ops are alerted."""

    reason: str


Decision = Send | Defer | Suppress | Undeliverable


@dataclass(frozen=True)
class Pending:
    """What the policy needs to know about one queued message."""

    category: Category
    urgent: bool
    exhausted_channels: frozenset[str] = field(default_factory=frozenset)


def decide(
    message: Pending, recipient_kind: RecipientKind, contact: Contact | None, now: datetime
) -> Decision:
    """Consent, quiet hours and channel: send now, wait, or do not send at all."""
    give_up = Suppress if recipient_kind == "customer" else Undeliverable
    if contact is None:
        return give_up("unknown_recipient: no contact details on record")
    if contact.is_customer:
        if message.category == "marketing" and not contact.marketing_consent:
            return Suppress("no_marketing_consent")
        if message.category == "service" and not contact.service_consent:
            return Suppress("no_service_consent")
    channel = next_channel(contact, set(message.exhausted_channels))
    if channel is None:
        reachable = channel_order(contact)
        return give_up("no_contact_point" if not reachable else "all_channels_failed")
    # Staff messages are urgent; only customers have quiet hours.
    quiet = contact.quiet_hours if contact.is_customer and not message.urgent else None
    if quiet is not None and quiet.contains(now):
        until = quiet.opens_after(now)
        return Defer(until, f"quiet_hours until {until.strftime('%H:%M')} Asia/Shanghai")
    return Send(channel)


# --- daily cap -------------------------------------------------------------------------


def local_day(moment: datetime) -> date:
    """The bank's calendar day of a moment (caps count per Asia/Shanghai day)."""
    return moment.astimezone(BANK_TZ).date()


def counts_against_cap(contact: Contact, urgent: bool) -> bool:
    """Only non-urgent customer messages are capped."""
    return contact.is_customer and not urgent


def within_daily_cap(sent_today: int, cap: int) -> bool:
    """May one more non-urgent message go out today?"""
    return sent_today < cap


# --- retries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, `max_attempts` per channel."""

    max_attempts: int = 3
    base_seconds: float = 30.0
    cap_seconds: float = 900.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """Wait before attempt `attempt + 1` (attempt counts from 1)."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1))
        jitter = (rng or random).uniform(0.5, 1.0)  # keep half so retries stay spaced
        return timedelta(seconds=ceiling * jitter)


@dataclass(frozen=True)
class AttemptResult:
    """What one provider call answered."""

    outcome: Outcome
    provider: str
    http_status: int | None = None
    error: str | None = None
    provider_message_id: str | None = None
    receipt: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Retry:
    channel: Channel
    after: timedelta


@dataclass(frozen=True)
class Fallback:
    channel: Channel


@dataclass(frozen=True)
class Delivered:
    channel: Channel


@dataclass(frozen=True)
class GiveUp:
    alert_kind: Literal["provider_down", "delivery_failed"]
    reason: str


AfterAttempt = Retry | Fallback | Delivered | GiveUp


def after_attempt(
    result: AttemptResult,
    *,
    channel: Channel,
    channel_attempts: int,
    contact: Contact,
    exhausted: set[str],
    policy: RetryPolicy,
) -> AfterAttempt:
    """Retry transient failures with backoff, fall back WeChat → SMS, else give up."""
    if result.outcome == "delivered":
        return Delivered(channel)
    if result.outcome == "transient" and channel_attempts < policy.max_attempts:
        return Retry(channel, policy.delay(channel_attempts))
    following = next_channel(contact, exhausted | {channel})
    if following is not None:
        return Fallback(following)
    if result.outcome == "transient":
        return GiveUp("provider_down", f"{channel}: {result.error or 'unavailable'}")
    return GiveUp("delivery_failed", f"{channel}: {result.error or 'rejected'}")
