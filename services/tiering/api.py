"""Tiering HTTP API: parse, authorise, call a handler or read."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.tiering import store
from services.tiering.domain import TIERS, TierPolicy
from services.tiering.handlers import change_policy, sweep_pending
from shared.contracts import Money, MoneyTotal
from shared.contracts.events import MaintenanceTeam, Tier
from shared.web.app import RuntimeDep
from shared.web.auth import AccessibleCustomerId, AnyBankRole, CurrentAdmin, CurrentOps
from shared.web.errors import ApiError

router = APIRouter(tags=["tiering"])


class CustomerTier(BaseModel):
    customer_id: str
    tier: Tier
    total_balance: Money
    maintenance_team: MaintenanceTeam
    since: datetime
    basis: str
    downgrade_grace_until: datetime | None = Field(
        description="Set while a lower balance waits out the downgrade grace period"
    )


class TierChange(BaseModel):
    previous_tier: Tier | None
    tier: Tier
    direction: str
    total_balance: Money
    changed_at: datetime
    cause: str
    cause_event_id: str | None


class TierHistory(BaseModel):
    items: list[TierChange]


class PolicyBody(BaseModel):
    """The tier policy; thresholds are inclusive lower bounds in CNY."""

    potential_from: Money = Field(ge=0, examples=["50000.00"])
    quality_from: Money = Field(ge=0, examples=["500000.00"])
    high_end_from: Money = Field(ge=0, examples=["3000000.00"])
    basis: Literal["balance", "average_daily_balance"] = "balance"
    adb_days: int = Field(default=30, ge=1, le=366)
    downgrade_grace_days: int = Field(default=0, ge=0, le=366)


class PolicyView(PolicyBody):
    version: int
    reevaluation_pending: bool = Field(
        description="True while customers are being re-evaluated under this policy"
    )


class TierShare(BaseModel):
    tier: Tier
    customers: int
    total_balance: MoneyTotal


class Distribution(BaseModel):
    items: list[TierShare]


@router.get("/customers/{customer_id}/tier", response_model=CustomerTier)
async def get_tier(customer_id: AccessibleCustomerId, rt: RuntimeDep) -> CustomerTier:
    """The customer's current tier and who maintains them."""
    async with rt.sessions() as session:
        row = await store.current_tier(session, customer_id)
    if row is None:
        raise ApiError(404, "not_found", f"no tier for customer {customer_id!r}")
    return CustomerTier(
        customer_id=row.customer_id,
        tier=row.tier,
        total_balance=row.total_balance,
        maintenance_team=row.maintenance_team,
        since=row.since,
        basis=row.basis,
        downgrade_grace_until=row.grace_until,
    )


@router.get("/customers/{customer_id}/tier/history", response_model=TierHistory)
async def get_history(customer_id: AccessibleCustomerId, rt: RuntimeDep) -> TierHistory:
    """Every tier change of the customer, oldest first."""
    async with rt.sessions() as session:
        rows = await store.history(session, customer_id)
    if not rows:
        raise ApiError(404, "not_found", f"no tier history for customer {customer_id!r}")
    return TierHistory(items=[TierChange.model_validate(r, from_attributes=True) for r in rows])


@router.get("/tiers/policy", response_model=PolicyView)
async def get_policy(_: AnyBankRole, rt: RuntimeDep) -> PolicyView:
    """The policy in force (defaults until an admin stores one)."""
    async with rt.sessions() as session:
        policy, version = await store.load_policy(session)
        pending = await sweep_pending(session)
    return _policy_view(policy, version, pending)


@router.put("/tiers/policy", response_model=PolicyView)
async def put_policy(body: PolicyBody, admin: CurrentAdmin, rt: RuntimeDep) -> PolicyView:
    """Change the policy; every customer is re-evaluated by a background sweep."""
    try:
        policy = TierPolicy(**body.model_dump())
    except ValueError as exc:
        raise ApiError(422, "validation_error", f"policy: {exc}") from None
    async with rt.uow() as tx:
        version = await change_policy(tx, policy, by=admin.subject)
    return _policy_view(policy, version, pending=True)


@router.get("/tiers/distribution", response_model=Distribution)
async def get_distribution(_: CurrentOps, rt: RuntimeDep) -> Distribution:
    """Customers and total deposit balance per tier (every tier listed, even when empty)."""
    async with rt.sessions() as session:
        rows = {r.tier: r for r in await store.distribution(session)}
    return Distribution(
        items=[
            TierShare(
                tier=tier,
                customers=rows[tier].customers if tier in rows else 0,
                total_balance=rows[tier].total_balance if tier in rows else Decimal("0.00"),
            )
            for tier in TIERS
        ]
    )


def _policy_view(policy: TierPolicy, version: int, pending: bool) -> PolicyView:
    return PolicyView(
        version=version,
        reevaluation_pending=pending,
        potential_from=policy.potential_from,
        quality_from=policy.quality_from,
        high_end_from=policy.high_end_from,
        basis=policy.basis,
        adb_days=policy.adb_days,
        downgrade_grace_days=policy.downgrade_grace_days,
    )
