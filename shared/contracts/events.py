"""Event payloads of every topic in DESIGN.md, as frozen pydantic models."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator

from shared.contracts.types import Contract, Money, Timestamp
from shared.logs import mask_pii_deep

Tier = Literal["ordinary", "potential", "quality", "high_end"]
MaintenanceTeam = Literal["branch_service", "customer_manager", "wealth_team", "private_banking"]
Severity = Literal["normal", "urgent", "major"]
ComplaintCategory = Literal[
    "card_fraud",
    "unauthorized_transaction",
    "account_security",
    "transfer_limit",
    "wealth_product",
    "processing_delay",
    "service_attitude",
    "fees",
    "system_outage",
    "other",
]
ComplaintChannel = Literal["app", "web", "hotline", "branch", "wechat", "regulator", "media"]
Channel = Literal["sms", "wechat"]
# Who is meant by a staff id in an event: an employee, or a department (its duty contact).
StaffKind = Literal["employee", "department"]

# Free text is bounded: a service stores it and passes it on in its own events, and an
# event the broker refuses (1 MB) stops the service's outbox relay, which publishes in order.
Code = Annotated[str, StringConstraints(max_length=64)]  # ids of other systems, product codes
PersonName = Annotated[str, StringConstraints(max_length=200)]
Mobile = Annotated[str, StringConstraints(max_length=32)]  # as CRM or the app typed it
OpenId = Annotated[str, StringConstraints(max_length=128)]
Language = Literal["zh-CN", "en"]

CustomerId = str


_OWNER_KIND = (
    "`department`: the owner is a department's desk (complaints customers file in the app), "
    "its duty contact takes the owner's messages; absent or `employee`: an employee"
)


def _id(description: str, example: str) -> Any:
    return Field(min_length=1, max_length=64, description=description, examples=[example])


# --- inbound: published by other bank systems -------------------------------------------


class BalanceChanged(Contract):
    """Core banking posted to a deposit account; `balance` is the balance after the posting."""

    customer_id: CustomerId = _id("Customer whose account changed", "C0001")
    account_id: str = _id("Deposit account", "A0001-01")
    currency: str = Field(
        pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code", examples=["CNY"]
    )
    balance: Money = Field(description="Account balance after the posting")
    delta: Money = Field(description="Signed amount of the posting")
    txn_id: str = _id("Core-banking transaction id", "T000123")
    account_seq: int | None = Field(
        default=None, ge=0, description="Increasing per account; orders postings", examples=[42]
    )
    booked_at: Timestamp | None = Field(default=None, description="When the posting was booked")


class ComplaintFiled(Contract):
    """A channel received a complaint; `complaint_ref` is its idempotency key."""

    complaint_ref: str = _id("The channel's id of the complaint", "APP-2026-000123")
    customer_id: CustomerId = _id("Complaining customer", "C0001")
    channel: ComplaintChannel
    category: ComplaintCategory
    description: str = Field(min_length=1, max_length=4000)
    amount_involved: Money | None = Field(default=None, description="Amount at stake, if any")
    received_by: str = _id("Employee who first received the complaint", "E001")
    branch_id: str = _id("Branch", "B001")
    received_at: Timestamp


class CustomerActivity(Contract):
    """The customer did something in a channel (app/web)."""

    customer_id: CustomerId = _id("Customer", "C0001")
    activity: Literal["login", "product_view", "purchase"]
    product_type: Code | None = Field(default=None, examples=["wealth", "deposit", "loan"])
    product_id: Code | None = Field(default=None, examples=["WM-2026-07"])
    at: Timestamp


class Consents(Contract):
    """What the customer agreed to receive."""

    service: bool | None = Field(default=None, description="Service messages")
    marketing: bool | None = Field(default=None, description="Marketing messages")


class CustomerUpdated(Contract):
    """CRM changed a customer; every field but `customer_id` is optional (partial update)."""

    customer_id: CustomerId = _id("Customer", "C0001")
    name: PersonName | None = None
    mobile: Mobile | None = Field(default=None, description="E.164", examples=["+8613800138000"])
    wechat_openid: OpenId | None = None
    language: Language | None = None
    preferred_channel: Channel | None = None
    consents: Consents | None = None
    branch_id: Code | None = None
    onboarded_at: Timestamp | None = None
    relationship_manager_id: Code | None = Field(
        default=None,
        description="Employee id of the customer's relationship manager (客户经理)",
        examples=["E001"],
    )


# --- outbound: owned by one service each ------------------------------------------------


class TierChanged(Contract):
    """A customer's deposit tier changed (or was decided for the first time)."""

    customer_id: CustomerId
    previous_tier: Tier | None = Field(description="null on the first classification")
    tier: Tier
    direction: Literal["initial", "upgrade", "downgrade"]
    total_balance: Money = Field(description="Total deposit balance in CNY that decided it")
    basis: Literal["balance", "average_daily_balance"]
    maintenance_team: MaintenanceTeam
    evaluated_at: Timestamp


ComplaintStatus = Literal[
    "received", "acknowledged", "in_progress", "awaiting_customer", "resolved", "closed"
]


class ComplaintCompensation(Contract):
    """Compensation granted on a complaint (救济标准)."""

    kind: Literal["service_flaw", "fund_loss"]
    points: int | None = Field(default=None, description="Points for a service flaw")
    amount: Money | None = Field(default=None, description="Money for a confirmed fund loss")
    loss_amount: Money | None = Field(default=None, description="The confirmed loss")
    apology_visit: bool = Field(
        default=False, description="A branch-president apology visit was scheduled"
    )
    granted_at: Timestamp


class ComplaintUpdated(Contract):
    """Full snapshot of a complaint after each change."""

    complaint_id: str
    complaint_ref: str
    customer_id: CustomerId
    status: ComplaintStatus
    severity: Severity
    category: ComplaintCategory
    owner_id: str = Field(description="First-contact owner (首问负责人), fixed for life")
    department: str
    handler_id: str | None = None
    resolution_due_at: Timestamp | None = None
    regulatory_due_at: Timestamp | None = None
    change: str = Field(description="What happened", examples=["filed", "transferred"])
    # Optional additions (compatible): more of the snapshot for consumers that want it.
    channel: ComplaintChannel | None = None
    branch_id: str | None = None
    received_at: Timestamp | None = None
    response_due_at: Timestamp | None = Field(default=None, description="First-response deadline")
    sla_paused: bool = Field(default=False, description="Waiting for the customer")
    is_repeat: bool = Field(default=False, description="Same customer+category within 90 days")
    escalation_level: int = Field(
        default=0, ge=0, le=2, description="0 none, 1 department head, 2 branch president"
    )
    flagged_for_review: bool = Field(default=False, description="A callback NPS was 0-6")
    resolved_at: Timestamp | None = None
    compensation: tuple[ComplaintCompensation, ...] = Field(
        default=(), description="Compensation granted so far"
    )
    owner_kind: StaffKind | None = Field(default=None, description=_OWNER_KIND)


SlaClock = Literal["response", "resolution"]


class SlaWarning(Contract):
    """A complaint's SLA deadline is near (default: 80% of the window elapsed)."""

    complaint_id: str
    customer_id: CustomerId
    severity: Severity
    clock: SlaClock
    due_at: Timestamp
    owner_id: str
    handler_id: str | None = None
    department: str
    # Optional additions (compatible).
    owner_kind: StaffKind | None = Field(default=None, description=_OWNER_KIND)
    branch_id: Code | None = Field(
        default=None, description="Branch that received the complaint (its president: level 2)"
    )


class SlaBreached(SlaWarning):
    """A complaint's SLA deadline passed; level 1 = department head, 2 = branch president."""

    escalation_level: Literal[1, 2]
    overdue_by_seconds: int = Field(ge=0)


class ComplaintCallbackDue(Contract):
    """A post-resolution callback (day 3/7/30) is due."""

    customer_id: CustomerId
    reason: Literal["complaint_followup"]
    complaint_id: str
    sequence: Literal[1, 2, 3]
    assignee_id: str = Field(description="The complaint's first-contact owner")
    due_at: Timestamp
    assignee_kind: StaffKind | None = Field(default=None, description=_OWNER_KIND)


class QuietHours(Contract):
    """Local (Asia/Shanghai) window in which non-urgent messages wait; may cross midnight."""

    start: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["21:00"])
    end: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["08:00"])


class ProfileChanged(Contract):
    """Full contact/preference snapshot of a customer after an effective change."""

    customer_id: CustomerId
    name: str | None = None
    mobile: str | None = None
    wechat_openid: str | None = None
    language: Language = "zh-CN"
    preferred_channel: Channel = "sms"
    consents: Consents = Consents(service=True, marketing=False)
    quiet_hours: QuietHours = QuietHours(start="21:00", end="08:00")
    tier: Tier | None = None
    maintenance_team: MaintenanceTeam | None = None
    relationship_manager_id: str | None = None
    branch_id: str | None = None


class ProfileCallbackDue(Contract):
    """An early-warning rule fired: someone should call the customer."""

    customer_id: CustomerId
    reason: Literal[
        "transaction_decline",
        "browsing_without_purchase",
        "post_complaint_inactivity",
        "new_customer_inactive",
    ]
    evidence: dict[str, Any] = Field(description="The numbers that triggered the rule")
    assignee_id: str
    due_at: Timestamp
    assignee_kind: StaffKind | None = Field(
        default=None,
        description="`employee`: assignee_id is the relationship manager; `department`: "
        "it is the maintenance team (no relationship manager known)",
    )


class Recipient(Contract):
    """Who a notification is for."""

    kind: Literal["customer", "employee", "department"]
    id: str


class NotificationStatus(Contract):
    """What happened to one notification."""

    notification_id: str
    recipient: Recipient
    channel: Channel | None
    template: str
    status: Literal["queued", "sent", "failed", "suppressed"]
    reason: str | None = None
    source_event_id: str


class OpsAlert(Contract):
    """Something ops should look at."""

    service: str
    severity: Literal["info", "warning", "critical"]
    kind: str = Field(examples=["sla_breach", "dead_letter", "provider_down"])
    message: str
    details: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Depends on `kind`. `sla_breach`: `department`, `clock`, `escalation_level`, "
            "`count` and `complaint_ids`, one alert for the complaints of a department "
            "whose clock reached the level in the same firing; with one complaint, also "
            "`complaint_id`."
        ),
    )

    @field_validator("message", "details")
    @classmethod
    def _masked(cls, value: Any) -> Any:
        """Phone numbers and openids masked: an alert quotes errors, and errors quote input
        (a dead letter's reason, a provider's answer), on a topic kept 30 days."""
        return mask_pii_deep(value)
