"""Notification tables and set-based queries (schema `notifications`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    any_,
    bindparam,
    cast,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bulk import Update, Upsert, Write, bulk_copy, bulk_insert, json_text

metadata = MetaData()

customers = Table(
    "customers",
    metadata,
    Column("customer_id", Text, primary_key=True),
    Column("name", Text),
    Column("mobile", Text),
    Column("wechat_openid", Text),
    Column("language", Text, nullable=False),
    Column("preferred_channel", Text, nullable=False),
    Column("service_consent", Boolean, nullable=False),
    Column("marketing_consent", Boolean, nullable=False),
    Column("quiet_start", Text, nullable=False),
    Column("quiet_end", Text, nullable=False),
    Column("tier", Text),
    Column("maintenance_team", Text),
    Column("relationship_manager_id", Text),
    Column("branch_id", Text),
    Column("as_of", DateTime(timezone=True), nullable=False),
)

staff = Table(
    "staff",
    metadata,
    Column("employee_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("mobile", Text),
    Column("wechat_openid", Text),
    Column("language", Text, nullable=False),
    Column("preferred_channel", Text, nullable=False),
    Column("department", Text),
    Column("branch_id", Text),
    Column("roles", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

duty_contacts = Table(
    "duty_contacts",
    metadata,
    Column("department", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("employee_id", Text),
    Column("mobile", Text),
    Column("wechat_openid", Text),
    Column("language", Text, nullable=False),
    Column("preferred_channel", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

templates = Table(
    "templates",
    metadata,
    Column("key", Text, primary_key=True),
    Column("category", Text, nullable=False),
    Column("bodies", JSONB, nullable=False),
    Column("wechat_template_id", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_by", Text),
)

notifications = Table(
    "notifications",
    metadata,
    Column("notification_id", Text, primary_key=True),
    Column("source_event_id", Text, nullable=False),
    Column("source_event_type", Text, nullable=False),
    Column("recipient_kind", Text, nullable=False),
    Column("recipient_id", Text, nullable=False),
    Column("template", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("category", Text, nullable=False),
    Column("urgent", Boolean, nullable=False),
    Column("variables", JSONB, nullable=False),
    Column("status", Text, nullable=False),
    Column("reason", Text),
    Column("channel", Text),
    Column("address", Text),
    Column("language", Text),
    Column("body", Text),
    Column("exhausted_channels", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("channel_attempts", Integer, nullable=False, server_default=text("0")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("timer_seq", Integer, nullable=False, server_default=text("0")),
    Column("deliver_after", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    UniqueConstraint(
        "source_event_id",
        "recipient_kind",
        "recipient_id",
        "template",
        name="notifications_one_per_event_recipient_template",
    ),
    Index("notifications_recipient", "recipient_kind", "recipient_id", "created_at"),
)

attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "notification_id",
        Text,
        ForeignKey("notifications.notification_id"),
        nullable=False,
    ),
    Column("attempt", Integer, nullable=False),
    Column("channel", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("http_status", Integer),
    Column("error", Text),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Index("delivery_attempts_notification", "notification_id", "attempt"),
)

receipts = Table(
    "provider_receipts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "notification_id",
        Text,
        ForeignKey("notifications.notification_id"),
        nullable=False,
    ),
    Column("provider", Text, nullable=False),
    Column("provider_message_id", Text),
    Column("status", Text, nullable=False),
    Column("raw", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("provider_receipts_notification", "notification_id"),
)

daily_counts = Table(
    "daily_counts",
    metadata,
    Column("customer_id", Text, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("sent", Integer, nullable=False),
)

sandbox_messages = Table(
    "sandbox_messages",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("notification_id", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("address", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=False),
)


# --- recipients replica ----------------------------------------------------------------


_CUSTOMER_COLUMNS = tuple(c.name for c in customers.columns if c.name != "customer_id")


async def save_customers(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Upsert profile snapshots; an older snapshot never overwrites a newer one."""
    if not rows:
        return
    await bulk_insert(
        session,
        customers,
        rows,
        conflict=("customer_id",),
        update=_CUSTOMER_COLUMNS,
        update_where="customers.as_of <= excluded.as_of",
    )


async def upsert_staff(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    stmt = pg_insert(staff).values(list(rows))
    columns = [c.name for c in staff.columns if c.name != "employee_id"]
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[staff.c.employee_id], set_={c: stmt.excluded[c] for c in columns}
        )
    )


async def upsert_duty_contacts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    stmt = pg_insert(duty_contacts).values(list(rows))
    columns = [c.name for c in duty_contacts.columns if c.name != "department"]
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[duty_contacts.c.department],
            set_={c: stmt.excluded[c] for c in columns},
        )
    )


def _any_of(ids: Iterable[str]) -> Any:
    """`= ANY(:ids)` with one text[] parameter: the same prepared statement for any count
    (an IN list is a new statement, prepared anew, for every distinct length)."""
    return any_(cast(bindparam("ids", sorted(set(ids)), type_=ARRAY(Text)), ARRAY(Text)))


async def customers_by_id(session: AsyncSession, ids: Iterable[str]) -> dict[str, Any]:
    wanted = set(ids)
    if not wanted:
        return {}
    rows = await session.execute(
        select(customers).where(customers.c.customer_id == _any_of(wanted))
    )
    return {r.customer_id: r for r in rows}


_CONTACT = "name, mobile, wechat_openid, language, preferred_channel"
_CONTACTS = text(
    "WITH c AS (SELECT * FROM customers WHERE customer_id = ANY(CAST(:customers AS TEXT[]))) "
    f"SELECT 'customer' AS kind, customer_id AS id, {_CONTACT}, service_consent, "
    "marketing_consent, quiet_start, quiet_end, relationship_manager_id FROM c "
    f"UNION ALL SELECT 'employee', employee_id, {_CONTACT}, NULL, NULL, NULL, NULL, NULL "
    "FROM staff WHERE employee_id = ANY(CAST(:employees AS TEXT[]) || ARRAY("
    "SELECT relationship_manager_id FROM c WHERE relationship_manager_id IS NOT NULL)) "
    f"UNION ALL SELECT 'department', department, {_CONTACT}, NULL, NULL, NULL, NULL, NULL "
    "FROM duty_contacts WHERE department = ANY(CAST(:departments AS TEXT[]))"
)


async def contacts(
    session: AsyncSession,
    customer_ids: Iterable[str],
    employee_ids: Iterable[str],
    departments: Iterable[str],
) -> dict[tuple[str, str], Any]:
    """Contact rows by (kind, id) in one round trip: the customers, the employees and the
    relationship managers of those customers (kind `employee`), and the departments' duty
    contacts. Customer rows also carry consents, quiet hours and relationship manager."""
    rows = await session.execute(
        _CONTACTS,
        {
            "customers": sorted(set(customer_ids)),
            "employees": sorted(set(employee_ids)),
            "departments": sorted(set(departments)),
        },
    )
    return {(r.kind, r.id): r for r in rows}


async def staff_with_roles(session: AsyncSession, roles: Sequence[str]) -> Sequence[Any]:
    """Staff holding any of `roles` (escalation contacts)."""
    return (await session.execute(select(staff).where(staff.c.roles.overlap(list(roles))))).all()


# --- templates -------------------------------------------------------------------------


async def template(session: AsyncSession, key: str) -> Any:
    return (await session.execute(select(templates).where(templates.c.key == key))).one_or_none()


async def save_template(session: AsyncSession, row: dict[str, Any]) -> Any:
    stmt = pg_insert(templates).values(row)
    return (
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[templates.c.key],
                set_={c: stmt.excluded[c] for c in row if c != "key"},
            ).returning(*templates.columns)
        )
    ).one()


# --- notifications ---------------------------------------------------------------------


# What the consumer needs back from a fresh notification (to announce it).
_ANNOUNCED = (
    "notification_id",
    "source_event_id",
    "recipient_kind",
    "recipient_id",
    "template",
    "customer_id",
)


# A message's category is its template's, read in the inserting statement itself; a
# template not on record sends as a service message.
_CATEGORY = "coalesce((SELECT t.category FROM templates AS t WHERE t.key = r.template), 'service')"


async def insert_notifications(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[Any]:
    """Insert new notifications (without `category`: see `_CATEGORY`) in one statement; the
    ones already recorded for (event, recipient, template) are skipped. Returns the inserted
    rows' identifying columns."""
    if not rows:
        return []
    return await bulk_insert(
        session,
        notifications,
        [row | {"variables": json_text(row["variables"])} for row in rows],
        conflict=("source_event_id", "recipient_kind", "recipient_id", "template"),
        returning=_ANNOUNCED,
        computed={"category": _CATEGORY},
    )


async def lock_notifications(session: AsyncSession, ids: Sequence[str]) -> list[Any]:
    """The queued notifications among `ids`, locked for this delivery round, each with its
    template as it stands (`template_bodies`, `template_wechat_id`; None when not on record)."""
    if not ids:
        return []
    rows = await session.execute(
        select(
            notifications,
            templates.c.bodies.label("template_bodies"),
            templates.c.wechat_template_id.label("template_wechat_id"),
        )
        .outerjoin(templates, templates.c.key == notifications.c.template)
        .where(notifications.c.notification_id == _any_of(ids), notifications.c.status == "queued")
        .order_by(notifications.c.created_at)
        .with_for_update(of=notifications)
    )
    return list(rows.all())


def delivery_writes(
    attempted: Sequence[dict[str, Any]],
    receipted: Sequence[dict[str, Any]],
    states: Sequence[dict[str, Any]],
) -> list[Write]:
    """A delivery transaction's attempts, receipts and notifications' new states, as writes
    for one statement at commit (`Tx.write_at_commit`). States are grouped by the columns
    they set, one UPDATE per group; a notification appears at most once in `states`."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in states:
        groups.setdefault(tuple(row), []).append(row)
    return [
        Upsert(attempts, attempted),
        Upsert(receipts, [row | {"raw": json_text(row["raw"])} for row in receipted]),
        *(Update(notifications, "notification_id", group) for group in groups.values()),
    ]


_TAKE_SLOTS = text(
    "INSERT INTO daily_counts (customer_id, day, sent) "
    "SELECT customer_id, CAST(:day AS DATE), 1 FROM unnest(CAST(:customers AS TEXT[])) "
    "AS u(customer_id) "
    "ON CONFLICT (customer_id, day) DO UPDATE SET sent = daily_counts.sent + 1 "
    "WHERE daily_counts.sent < :cap RETURNING customer_id"
)


async def take_daily_slots(
    session: AsyncSession, customer_ids: Sequence[str], day: date, cap: int
) -> set[str]:
    """Atomically count one more non-urgent message for the day for each of the (distinct)
    customers; answers those who got a slot (the others are at the cap). Rows are locked in
    customer order, so two deliveries taking slots of the same customers cannot deadlock."""
    if cap <= 0 or not customer_ids:
        return set()
    taken = await session.execute(
        _TAKE_SLOTS, {"customers": sorted(customer_ids), "day": day, "cap": cap}
    )
    return {r.customer_id for r in taken}


async def list_notifications(
    session: AsyncSession, recipient_kind: str | None, recipient_id: str | None, limit: int
) -> Sequence[Any]:
    query = select(notifications).order_by(notifications.c.created_at.desc()).limit(limit)
    if recipient_kind and recipient_id:
        query = query.where(
            notifications.c.recipient_kind == recipient_kind,
            notifications.c.recipient_id == recipient_id,
        )
    return (await session.execute(query)).all()


async def notification(session: AsyncSession, notification_id: str) -> Any:
    return (
        await session.execute(
            select(notifications).where(notifications.c.notification_id == notification_id)
        )
    ).one_or_none()


async def attempts_of(session: AsyncSession, notification_id: str) -> Sequence[Any]:
    return (
        await session.execute(
            select(attempts)
            .where(attempts.c.notification_id == notification_id)
            .order_by(attempts.c.id)
        )
    ).all()


async def receipts_of(session: AsyncSession, notification_id: str) -> Sequence[Any]:
    return (
        await session.execute(
            select(receipts)
            .where(receipts.c.notification_id == notification_id)
            .order_by(receipts.c.id)
        )
    ).all()


async def record_sandbox_messages(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await bulk_copy(session, sandbox_messages, rows)


async def sandbox_messages_to(session: AsyncSession, address: str | None) -> Sequence[Any]:
    query = select(sandbox_messages).order_by(sandbox_messages.c.id.desc()).limit(200)
    if address:
        query = query.where(sandbox_messages.c.address == address)
    return (await session.execute(query)).all()
