"""Profile tables and set-based queries (schema `profile`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.profile.domain import PROFILE_FIELDS, Profile
from shared.bulk import any_of, bulk_insert, json_text
from shared.db import lock_keys

metadata = MetaData()
MONEY = Numeric(18, 2)
TS = DateTime(timezone=True)

profiles = Table(
    "profiles",
    metadata,
    Column("customer_id", Text, primary_key=True),
    Column("name", Text),
    Column("mobile", Text),
    Column("wechat_openid", Text),
    Column("language", Text, nullable=False),
    Column("preferred_channel", Text, nullable=False),
    Column("consent_service", Boolean, nullable=False),
    Column("consent_marketing", Boolean, nullable=False),
    Column("quiet_hours_start", Text, nullable=False),
    Column("quiet_hours_end", Text, nullable=False),
    Column("tier", Text),
    Column("maintenance_team", Text),
    Column("relationship_manager_id", Text),
    Column("branch_id", Text),
    Column("onboarded_at", TS),
    Column("field_stamps", JSONB, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)

customer_signals = Table(
    "customer_signals",
    metadata,
    Column("customer_id", Text, primary_key=True),
    Column("last_transaction_at", TS),
    Column("last_activity_at", TS),
    Column("last_login_at", TS),
    Column("logins", BigInteger, nullable=False),
    Column("product_views", BigInteger, nullable=False),
    Column("wealth_views", BigInteger, nullable=False),
    Column("purchases", BigInteger, nullable=False),
    Column("last_wealth_purchase_at", TS),
    Column("last_complaint_at", TS),
    Column("browsing_alerted_on", Date),
)

monthly_transactions = Table(
    "monthly_transactions",
    metadata,
    Column("customer_id", Text, nullable=False),
    Column("month", Date, nullable=False),
    Column("transactions", BigInteger, nullable=False),
    Column("turnover_cny", MONEY, nullable=False),
    PrimaryKeyConstraint("customer_id", "month", name="monthly_transactions_pkey"),
    Index("monthly_transactions_month", "month"),
)

wealth_days = Table(
    "wealth_days",
    metadata,
    Column("customer_id", Text, nullable=False),
    Column("day", Date, nullable=False),
    Column("views", BigInteger, nullable=False),
    Column("purchases", BigInteger, nullable=False),
    PrimaryKeyConstraint("customer_id", "day", name="wealth_days_pkey"),
)

complaints = Table(
    "complaints",
    metadata,
    Column("complaint_id", Text, primary_key=True),
    Column("customer_id", Text, nullable=False),
    Column("filed_at", TS, nullable=False),
    Index("complaints_customer", "customer_id", "filed_at"),
)

early_warnings = Table(
    "early_warnings",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("customer_id", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("occurrence", Text, nullable=False),
    Column("evidence", JSONB, nullable=False),
    Column("assignee_id", Text, nullable=False),
    Column("due_at", TS, nullable=False),
    Column("raised_at", TS, nullable=False),
    UniqueConstraint("customer_id", "reason", "occurrence", name="early_warnings_occurrence"),
    Index("early_warnings_customer", "customer_id", "raised_at"),
)


# --- profiles ------------------------------------------------------------------------------


def _profile(row: Any) -> Profile:
    stamps = {k: datetime.fromisoformat(v) for k, v in row.field_stamps.items()}
    return Profile(row.customer_id, {f: getattr(row, f) for f in PROFILE_FIELDS}, stamps, False)


async def lock_profiles(session: AsyncSession, customer_ids: Iterable[str]) -> dict[str, Profile]:
    """The existing profiles among `customer_ids`, row-locked for this transaction."""
    ids = sorted(set(customer_ids))
    # Row locks cannot cover a profile that does not exist yet: an advisory lock per customer
    # serialises every writer of the same customer, e.g. two replicas creating it from a CRM
    # update and a tier change at the same moment.
    await lock_keys(session, "profile", ids)
    rows = await session.execute(
        select(profiles).where(any_of(profiles.c.customer_id, ids)).with_for_update()
    )
    return {r.customer_id: _profile(r) for r in rows}


async def get_profile(session: AsyncSession, customer_id: str) -> Profile | None:
    row = (
        await session.execute(select(profiles).where(profiles.c.customer_id == customer_id))
    ).one_or_none()
    return _profile(row) if row else None


async def save_profiles(session: AsyncSession, changed: Sequence[Profile], now: datetime) -> None:
    """Upsert the given profiles (values and field stamps) in one statement."""
    if not changed:
        return
    rows = [
        p.values
        | {
            "customer_id": p.customer_id,
            "field_stamps": json_text({k: v.isoformat() for k, v in p.stamps.items()}),
            "created_at": now,
            "updated_at": now,
        }
        for p in changed
    ]
    await bulk_insert(
        session,
        profiles,
        rows,
        conflict=("customer_id",),
        update=(*PROFILE_FIELDS, "field_stamps", "updated_at"),
    )


async def assignment_of(session: AsyncSession, customer_ids: Iterable[str]) -> dict[str, Any]:
    """Relationship manager and maintenance team of each known customer."""
    rows = await session.execute(
        select(
            profiles.c.customer_id,
            profiles.c.relationship_manager_id,
            profiles.c.maintenance_team,
        ).where(any_of(profiles.c.customer_id, sorted(set(customer_ids))))
    )
    return {r.customer_id: r for r in rows}


# --- behaviour signals ---------------------------------------------------------------------


async def add_signals(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Add a batch's per-customer counts and latest times, in one upsert."""
    if not rows:
        return
    latest = (
        "last_transaction_at",
        "last_activity_at",
        "last_login_at",
        "last_wealth_purchase_at",
        "last_complaint_at",
    )
    counts = ("logins", "product_views", "wealth_views", "purchases")
    sets = {c: f"greatest(customer_signals.{c}, excluded.{c})" for c in latest}
    sets |= {c: f"customer_signals.{c} + excluded.{c}" for c in counts}
    await bulk_insert(session, customer_signals, rows, conflict=("customer_id",), update_sql=sets)


async def add_monthly_transactions(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Add a batch's transaction counts and turnover per customer and local month."""
    if not rows:
        return
    await bulk_insert(
        session,
        monthly_transactions,
        rows,
        conflict=("customer_id", "month"),
        update_sql={
            "transactions": "monthly_transactions.transactions + excluded.transactions",
            "turnover_cny": "monthly_transactions.turnover_cny + excluded.turnover_cny",
        },
    )


async def add_wealth_days(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Add a batch's wealth-product views and purchases per customer and local day."""
    if not rows:
        return
    await bulk_insert(
        session,
        wealth_days,
        rows,
        conflict=("customer_id", "day"),
        update_sql={
            "views": "wealth_days.views + excluded.views",
            "purchases": "wealth_days.purchases + excluded.purchases",
        },
    )


async def wealth_history(
    session: AsyncSession, customer_ids: Iterable[str], since: date, until: date
) -> dict[str, tuple[dict[date, int], set[date]]]:
    """(wealth views per day, wealth purchase days) of each customer within [since, until]."""
    ids = sorted(set(customer_ids))
    history: dict[str, tuple[dict[date, int], set[date]]] = {cid: ({}, set()) for cid in ids}
    rows = await session.execute(
        select(wealth_days).where(
            any_of(wealth_days.c.customer_id, ids), wealth_days.c.day.between(since, until)
        )
    )
    for r in rows:
        views, purchases = history[r.customer_id]
        if r.views:
            views[r.day] = int(r.views)
        if r.purchases:
            purchases.add(r.day)
    return history


async def lock_browsing_alerts(
    session: AsyncSession, customer_ids: Iterable[str]
) -> dict[str, date | None]:
    """Day of each customer's last browsing callback, row-locked (one alert per span)."""
    rows = await session.execute(
        select(customer_signals.c.customer_id, customer_signals.c.browsing_alerted_on)
        .where(any_of(customer_signals.c.customer_id, sorted(set(customer_ids))))
        .with_for_update()
    )
    return {r.customer_id: r.browsing_alerted_on for r in rows}


async def set_browsing_alerts(session: AsyncSession, alerted: dict[str, date]) -> None:
    if not alerted:
        return
    await bulk_insert(
        session,
        customer_signals,
        [
            {
                "customer_id": cid,
                "browsing_alerted_on": day,
                "logins": 0,
                "product_views": 0,
                "wealth_views": 0,
                "purchases": 0,
            }
            for cid, day in alerted.items()
        ],
        conflict=("customer_id",),
        update=("browsing_alerted_on",),
    )


async def record_complaints(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[Any]:
    """Insert complaints not seen before; returns the newly recorded ones."""
    if not rows:
        return []
    return await bulk_insert(
        session,
        complaints,
        rows,
        conflict=("complaint_id",),
        returning=("complaint_id", "customer_id", "filed_at"),
    )


async def signals_of(session: AsyncSession, customer_ids: Iterable[str]) -> dict[str, Any]:
    rows = await session.execute(
        select(customer_signals).where(
            any_of(customer_signals.c.customer_id, sorted(set(customer_ids)))
        )
    )
    return {r.customer_id: r for r in rows}


async def decline_candidates(
    session: AsyncSession,
    earlier_from: date,
    recent_from: date,
    until: date,
    min_earlier: int,
    cooldown_from: datetime,
) -> list[Any]:
    """Per customer: transactions in [recent_from, until) and in [earlier_from, recent_from),
    for customers with at least `min_earlier` earlier ones and no decline callback since
    `cooldown_from`."""
    m = monthly_transactions.c
    recent = func.coalesce(func.sum(m.transactions).filter(m.month >= recent_from), 0)
    earlier = func.coalesce(func.sum(m.transactions).filter(m.month < recent_from), 0)
    already = (
        select(early_warnings.c.id)
        .where(
            early_warnings.c.customer_id == m.customer_id,
            early_warnings.c.reason == "transaction_decline",
            early_warnings.c.raised_at > cooldown_from,
        )
        .exists()
    )
    stmt = (
        select(m.customer_id, recent.label("recent"), earlier.label("earlier"))
        .where(m.month >= earlier_from, m.month < until, ~already)
        .group_by(m.customer_id)
        .having(earlier >= min_earlier)
    )
    return list((await session.execute(stmt)).all())


async def monthly_counts(session: AsyncSession, customer_id: str, since: date) -> list[Any]:
    return list(
        (
            await session.execute(
                select(monthly_transactions)
                .where(
                    monthly_transactions.c.customer_id == customer_id,
                    monthly_transactions.c.month >= since,
                )
                .order_by(monthly_transactions.c.month)
            )
        ).all()
    )


# --- early warnings ------------------------------------------------------------------------


async def record_warnings(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> set[tuple[str, str, str]]:
    """Insert warnings; returns the (customer, reason, occurrence) keys that are new."""
    if not rows:
        return set()
    stmt = (
        pg_insert(early_warnings)
        .values(list(rows))
        .on_conflict_do_nothing(constraint="early_warnings_occurrence")
    )
    result = await session.execute(
        stmt.returning(
            early_warnings.c.customer_id, early_warnings.c.reason, early_warnings.c.occurrence
        )
    )
    return {(r.customer_id, r.reason, r.occurrence) for r in result}


async def recent_warnings(session: AsyncSession, customer_id: str, limit: int = 20) -> list[Any]:
    return list(
        (
            await session.execute(
                select(early_warnings)
                .where(early_warnings.c.customer_id == customer_id)
                .order_by(early_warnings.c.raised_at.desc(), early_warnings.c.id.desc())
                .limit(limit)
            )
        ).all()
    )
