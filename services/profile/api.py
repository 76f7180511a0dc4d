"""Profile HTTP API: parse, authorise, call a handler (rules live in handlers/domain).

Who sees what (GET /profiles/{id}): a customer sees their own profile in full; staff, ops
and admin see any profile, with `mobile` and `wechat_openid` masked unless their token's
`permissions` claim holds `pii`. Behaviour signals (GET /profiles/{id}/signals) are for the
bank's roles only. Who may change what (PATCH) is in domain.EDITABLE_BY_ROLE and the README.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from services.profile import store
from services.profile.domain import Profile
from services.profile.handlers import update_profile
from services.profile.signals import signals_view
from shared.contracts import MoneyTotal
from shared.contracts.events import (
    Channel,
    Code,
    Language,
    MaintenanceTeam,
    Mobile,
    OpenId,
    PersonName,
    Tier,
)
from shared.logs import mask_mobile, mask_openid
from shared.web.app import RuntimeDep
from shared.web.auth import AccessibleCustomerId, AnyBankRole, CurrentPrincipal, Principal
from shared.web.errors import ApiError

router = APIRouter(tags=["profile"])
PII = "pii"


class ConsentsView(BaseModel):
    service: bool
    marketing: bool


class QuietHoursView(BaseModel):
    start: str = Field(examples=["21:00"])
    end: str = Field(examples=["08:00"])


class ProfileView(BaseModel):
    customer_id: str
    name: str | None
    mobile: str | None
    wechat_openid: str | None
    language: Language
    preferred_channel: Channel
    consents: ConsentsView
    quiet_hours: QuietHoursView
    tier: Tier | None
    maintenance_team: MaintenanceTeam | None
    relationship_manager_id: str | None
    branch_id: str | None
    onboarded_at: datetime | None
    pii_masked: bool = Field(description="mobile/wechat_openid are masked for this caller")


class ConsentsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service: bool | None = None
    marketing: bool | None = None


class QuietHoursPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: str = Field(description="HH:MM, Asia/Shanghai", examples=["22:00"])
    end: str = Field(description="HH:MM, Asia/Shanghai; may be before start", examples=["07:30"])


class ProfilePatch(BaseModel):
    """Fields to change; absent fields stay. Which role may change which: see the README."""

    model_config = ConfigDict(extra="forbid")
    name: PersonName | None = None
    mobile: Mobile | None = Field(default=None, examples=["13800138000", "+8613800138000"])
    wechat_openid: OpenId | None = None
    language: Language | None = None
    preferred_channel: Channel | None = None
    consents: ConsentsPatch | None = None
    quiet_hours: QuietHoursPatch | None = None
    branch_id: Code | None = None
    relationship_manager_id: Code | None = None


class MonthlyTransactions(BaseModel):
    month: str = Field(examples=["2026-11"], description="Asia/Shanghai calendar month")
    transactions: int
    turnover_cny: MoneyTotal


class RfmView(BaseModel):
    recency: int = Field(ge=1, le=5)
    frequency: int = Field(ge=1, le=5)
    monetary: int = Field(ge=1, le=5)
    total: int
    days_since_last_transaction: int | None
    transactions_12m: int
    turnover_cny_12m: MoneyTotal


class EarlyWarningView(BaseModel):
    reason: str
    occurrence: str
    evidence: dict[str, Any]
    assignee_id: str
    due_at: datetime
    raised_at: datetime


class SignalsView(BaseModel):
    customer_id: str
    monthly_transactions: list[MonthlyTransactions]
    last_transaction_at: datetime | None
    last_activity_at: datetime | None
    last_login_at: datetime | None
    logins: int
    product_views: int
    wealth_product_views: int
    purchases: int
    last_wealth_purchase_at: datetime | None
    last_complaint_at: datetime | None
    rfm: RfmView
    early_warnings: list[EarlyWarningView]


def _view(profile: Profile, principal: Principal) -> ProfileView:
    v = profile.values
    masked = principal.role != "customer" and PII not in principal.permissions
    return ProfileView(
        customer_id=profile.customer_id,
        name=v["name"],
        mobile=mask_mobile(v["mobile"]) if masked else v["mobile"],
        wechat_openid=mask_openid(v["wechat_openid"]) if masked else v["wechat_openid"],
        language=v["language"],
        preferred_channel=v["preferred_channel"],
        consents=ConsentsView(service=v["consent_service"], marketing=v["consent_marketing"]),
        quiet_hours=QuietHoursView(start=v["quiet_hours_start"], end=v["quiet_hours_end"]),
        tier=v["tier"],
        maintenance_team=v["maintenance_team"],
        relationship_manager_id=v["relationship_manager_id"],
        branch_id=v["branch_id"],
        onboarded_at=v["onboarded_at"],
        pii_masked=masked,
    )


@router.get("/profiles/{customer_id}", response_model=ProfileView)
async def get_profile(
    customer_id: AccessibleCustomerId, principal: CurrentPrincipal, rt: RuntimeDep
) -> ProfileView:
    """The customer's contact points and preferences (PII masked without `pii`)."""
    async with rt.sessions() as session:
        profile = await store.get_profile(session, customer_id)
    if profile is None:
        raise ApiError(404, "not_found", f"no profile for customer {customer_id!r}")
    return _view(profile, principal)


@router.patch("/profiles/{customer_id}", response_model=ProfileView)
async def patch_profile(
    customer_id: AccessibleCustomerId,
    principal: CurrentPrincipal,
    body: ProfilePatch,
    rt: RuntimeDep,
) -> ProfileView:
    """Change fields the caller's role may change; emits ProfileChanged if anything changed."""
    changes = body.model_dump(exclude_unset=True)
    profile = await update_profile(rt.uow, principal.role, customer_id, changes)
    return _view(profile, principal)


@router.get("/profiles/{customer_id}/signals", response_model=SignalsView)
async def get_signals(customer_id: str, _: AnyBankRole, rt: RuntimeDep) -> SignalsView:
    """Monthly transactions, activity, RFM scores and recent early warnings (bank roles)."""
    async with rt.sessions() as session:
        view = await signals_view(session, customer_id, rt.clock.now())
    if view is None:
        raise ApiError(404, "not_found", f"no behaviour signals for customer {customer_id!r}")
    return SignalsView.model_validate(view)
