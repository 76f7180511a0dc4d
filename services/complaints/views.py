"""Request bodies and response shapes of the complaints API."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.complaints.domain import CompensationKind, Complaint, kpis
from shared.contracts import Money, Timestamp
from shared.contracts.events import (
    ComplaintCategory,
    ComplaintChannel,
    ComplaintStatus,
    Severity,
    StaffKind,
)


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FileComplaintRequest(Body):
    """The ComplaintFiled fields; who the customer and the receiver are comes from the token."""

    complaint_ref: str | None = Field(default=None, min_length=1, max_length=64)
    customer_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="Required with a staff token"
    )
    channel: ComplaintChannel | None = Field(
        default=None,
        description="Required for staff; a customer files through `app` (the default)",
    )
    category: ComplaintCategory
    description: str = Field(min_length=1, max_length=4000)
    amount_involved: Money | None = None
    branch_id: str | None = Field(default=None, min_length=1, max_length=64)
    received_at: Timestamp | None = Field(
        default=None,
        description="Defaults to now; staff only: from 2000 on, not in the future",
    )


class TransferRequest(Body):
    department: str | None = Field(default=None, min_length=1, max_length=64)
    handler_id: str | None = Field(default=None, min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=1000)


class ResolveRequest(Body):
    resolution: str = Field(min_length=1, max_length=4000)
    root_cause: str = Field(min_length=1, max_length=1000)


class SeverityRequest(Body):
    severity: Severity
    reason: str = Field(min_length=1, max_length=1000)


class ReasonRequest(Body):
    reason: str = Field(default="", max_length=1000)


class ExtendRegulatoryRequest(Body):
    approved_by: str = Field(min_length=1, max_length=64, description="Approving manager")
    reason: str = Field(min_length=1, max_length=1000)


class CallbackRequest(Body):
    reached: bool
    nps: int | None = Field(default=None, ge=0, le=10)
    note: str | None = Field(default=None, max_length=4000)


class CompensationRequest(Body):
    kind: CompensationKind
    loss_amount: Money | None = None


class ComplaintView(BaseModel):
    """A complaint as the API shows it; `trail` and `callbacks` on the single-complaint view."""

    complaint_id: str
    complaint_ref: str
    customer_id: str
    status: ComplaintStatus
    severity: Severity
    grading_reasons: list[str]
    category: ComplaintCategory
    channel: ComplaintChannel
    description: str
    amount_involved: Money | None
    branch_id: str
    received_at: datetime
    owner_id: str = Field(description="First-contact owner (首问负责人), fixed for life")
    owner_kind: StaffKind = Field(
        description="`department` when a desk owns it (complaints customers file in the app)"
    )
    department: str
    handler_id: str | None
    is_repeat: bool
    response_due_at: datetime
    response_met_at: datetime | None
    resolution_due_at: datetime
    sla_paused: bool
    regulatory_due_at: datetime
    overdue: bool
    escalation_level: int
    flagged_for_review: bool
    resolution: str | None
    root_cause: str | None
    resolved_at: datetime | None
    closed_at: datetime | None
    reopen_count: int
    apology_visit_scheduled: bool
    compensation: list[dict[str, Any]]
    severity_changes: list[dict[str, Any]]
    regulatory_extensions: list[dict[str, Any]]
    trail: list[dict[str, Any]] | None = None
    callbacks: list[dict[str, Any]] | None = None


class ComplaintList(BaseModel):
    items: list[ComplaintView]


def _plain(items: list[Any]) -> list[dict[str, Any]]:
    """Flat dataclasses as dicts, money as text. Their fields are scalars, so a shallow read
    of the instance dict does what `dataclasses.asdict` (a deep copy) would, without the copy."""
    return [
        {k: (format(v, "f") if isinstance(v, Decimal) else v) for k, v in vars(i).items()}
        for i in items
    ]


def complaint_view(c: Complaint, now: datetime, *, detail: bool = False) -> ComplaintView:
    """The API shape of a complaint at `now`."""
    return ComplaintView(
        complaint_id=c.complaint_id,
        complaint_ref=c.complaint_ref,
        customer_id=c.customer_id,
        status=c.status,
        severity=c.severity,
        grading_reasons=list(c.grading_reasons),
        category=c.category,
        channel=c.channel,
        description=c.description,
        amount_involved=c.amount_involved,
        branch_id=c.branch_id,
        received_at=c.received_at,
        owner_id=c.owner_id,
        owner_kind=c.owner_kind,
        department=c.department,
        handler_id=c.handler_id,
        is_repeat=c.is_repeat,
        response_due_at=c.response_due_at,
        response_met_at=c.response_clock.met_at,
        resolution_due_at=c.resolution_due_at(now),
        sla_paused=c.resolution_clock.paused_since is not None,
        regulatory_due_at=c.regulatory_due_at,
        overdue=c.is_overdue(now),
        escalation_level=c.escalation_level,
        flagged_for_review=c.flagged_for_review,
        resolution=c.resolution,
        root_cause=c.root_cause,
        resolved_at=c.resolved_at,
        closed_at=c.closed_at,
        reopen_count=c.reopen_count,
        apology_visit_scheduled=c.apology_visit_scheduled,
        compensation=_plain(c.compensation),
        severity_changes=_plain(c.severity_changes),
        regulatory_extensions=_plain(c.regulatory_extensions),
        trail=_plain(c.trail) if detail else None,
        callbacks=_plain([cb for cb in c.callbacks if not cb.cancelled]) if detail else None,
    )


class GroupStats(BaseModel):
    complaints: int
    resolved: int
    sla_compliance_pct: Decimal | None = Field(
        description="Resolved on time / (resolved + open past the resolution deadline)"
    )
    average_handling_hours: Decimal | None
    repeat_rate_pct: Decimal | None
    nps: Decimal | None = Field(description="% promoters (9-10) - % detractors (0-6)")
    nps_responses: int


class ComplaintStats(BaseModel):
    overall: GroupStats
    by_severity: dict[str, GroupStats]
    by_department: dict[str, GroupStats]
    by_branch: dict[str, GroupStats]


def _group(row: Any) -> tuple[str, str]:
    """Which GROUPING SETS group a stats row belongs to, and its key."""
    if not row.g_severity:
        return "severity", row.severity
    if not row.g_department:
        return "department", row.department
    if not row.g_branch:
        return "branch", row.branch_id
    return "overall", ""


def stats_view(counts: Sequence[Any], handling: Sequence[Any]) -> ComplaintStats:
    """The stats response from the grouped counts and handling times."""
    hours = {_group(r): r.avg_handling_seconds for r in handling}
    groups = {_group(r): GroupStats(**kpis(r._asdict(), hours.get(_group(r)))) for r in counts}
    return ComplaintStats(
        overall=groups.get(("overall", "")) or GroupStats(**kpis({}, None)),
        by_severity={k: v for (g, k), v in groups.items() if g == "severity"},
        by_department={k: v for (g, k), v in groups.items() if g == "department"},
        by_branch={k: v for (g, k), v in groups.items() if g == "branch"},
    )
