"""Commands of the notification API: staff and duty contacts, template edits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.notifications import store
from services.notifications.domain import Category
from services.notifications.templating import TemplateError, validate
from shared.contracts.events import Channel, Language
from shared.unit_of_work import Tx

STAFF_ROLES = frozenset({"department_head", "branch_president", "customer_manager", "duty"})


@dataclass(frozen=True)
class RegisterStaff:
    """Create or replace one employee's contact record."""

    employee_id: str
    name: str
    mobile: str | None = None
    wechat_openid: str | None = None
    language: Language = "zh-CN"
    preferred_channel: Channel = "sms"
    department: str | None = None
    branch_id: str | None = None
    roles: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class SetDutyContact:
    """Name who receives a department's messages (and how to reach them)."""

    department: str
    name: str
    employee_id: str | None = None
    mobile: str | None = None
    wechat_openid: str | None = None
    language: Language = "zh-CN"
    preferred_channel: Channel = "sms"


@dataclass(frozen=True)
class EditTemplate:
    """Replace a template's texts (validated) and category."""

    key: str
    category: Category
    bodies: Mapping[str, str]
    wechat_template_id: str | None
    edited_by: str


class UnknownRole(ValueError):
    pass


async def register_staff(tx: Tx, commands: list[RegisterStaff]) -> None:
    """Upsert staff records (the API and the seed file both come here)."""
    for command in commands:
        unknown = sorted(set(command.roles) - STAFF_ROLES)
        if unknown:
            known = ", ".join(sorted(STAFF_ROLES))
            raise UnknownRole(f"roles: unknown role(s) {', '.join(unknown)}; known: {known}")
    rows = [
        {
            "employee_id": c.employee_id,
            "name": c.name,
            "mobile": c.mobile,
            "wechat_openid": c.wechat_openid,
            "language": c.language,
            "preferred_channel": c.preferred_channel,
            "department": c.department,
            "branch_id": c.branch_id,
            "roles": sorted(set(c.roles)),
            "updated_at": tx.now,
        }
        for c in commands
    ]
    await store.upsert_staff(tx.session, rows)


async def set_duty_contacts(tx: Tx, commands: list[SetDutyContact]) -> None:
    """Upsert departments' duty contacts."""
    rows = [
        {
            "department": c.department,
            "name": c.name,
            "employee_id": c.employee_id,
            "mobile": c.mobile,
            "wechat_openid": c.wechat_openid,
            "language": c.language,
            "preferred_channel": c.preferred_channel,
            "updated_at": tx.now,
        }
        for c in commands
    ]
    await store.upsert_duty_contacts(tx.session, rows)


async def edit_template(tx: Tx, command: EditTemplate) -> Any:
    """Validate and store a template; raises TemplateError naming unknown variables."""
    validate(command.key, command.bodies)
    current = await store.template(tx.session, command.key)
    if current is None:
        raise TemplateError(f"unknown template {command.key!r}")
    return await store.save_template(
        tx.session,
        {
            "key": command.key,
            "category": command.category,
            "bodies": dict(command.bodies),
            "wechat_template_id": command.wechat_template_id or current.wechat_template_id,
            "updated_at": tx.now,
            "updated_by": command.edited_by,
        },
    )
