"""Notification HTTP API: read messages, maintain staff/duty contacts, edit templates."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.notifications import store
from services.notifications.commands import (
    EditTemplate,
    RegisterStaff,
    SetDutyContact,
    UnknownRole,
    edit_template,
    register_staff,
    set_duty_contacts,
)
from services.notifications.domain import Category
from services.notifications.templating import TEMPLATE_VARIABLES, TemplateError
from shared.contracts.events import Channel, Language
from shared.logs import mask_mobile, mask_openid
from shared.web.app import RuntimeDep
from shared.web.auth import CurrentAdmin, CurrentOps, CurrentPrincipal, Principal
from shared.web.errors import ApiError

router = APIRouter(tags=["notifications"])

E164 = r"^\+[1-9][0-9]{7,14}$"


class RecipientOut(BaseModel):
    kind: str
    id: str


class NotificationOut(BaseModel):
    notification_id: str
    recipient: RecipientOut
    customer_id: str = Field(description="The customer the message is about")
    template: str
    category: str
    urgent: bool
    status: str
    reason: str | None
    channel: str | None
    address: str | None = Field(description="Masked mobile number or openid")
    language: str | None
    body: str | None
    attempts: int
    source_event_id: str
    created_at: datetime
    deliver_after: datetime | None
    sent_at: datetime | None


class AttemptOut(BaseModel):
    attempt: int
    channel: str
    provider: str
    outcome: str
    http_status: int | None
    error: str | None
    started_at: datetime
    finished_at: datetime


class ReceiptOut(BaseModel):
    provider: str
    provider_message_id: str | None
    status: str
    raw: dict[str, Any]
    received_at: datetime


class NotificationDetail(NotificationOut):
    attempt_log: list[AttemptOut]
    receipts: list[ReceiptOut]


class NotificationList(BaseModel):
    items: list[NotificationOut]


class StaffIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    mobile: str | None = Field(default=None, pattern=E164, examples=["+8613800138000"])
    wechat_openid: str | None = Field(default=None, min_length=1, max_length=64)
    language: Language = "zh-CN"
    preferred_channel: Channel = "sms"
    department: str | None = None
    branch_id: str | None = None
    roles: list[str] = Field(default_factory=list, examples=[["department_head"]])


class StaffOut(StaffIn):
    employee_id: str


class DutyContactIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    employee_id: str | None = None
    mobile: str | None = Field(default=None, pattern=E164)
    wechat_openid: str | None = Field(default=None, min_length=1, max_length=64)
    language: Language = "zh-CN"
    preferred_channel: Channel = "sms"


class DutyContactOut(DutyContactIn):
    department: str


class TemplateIn(BaseModel):
    category: Category
    bodies: dict[str, str] = Field(
        description="Text per language (zh-CN and en) with {variable} placeholders",
        examples=[{"zh-CN": "尊敬的{customer_name}……", "en": "Dear {customer_name}, ..."}],
    )
    wechat_template_id: str | None = None


class TemplateOut(BaseModel):
    key: str
    category: str
    bodies: dict[str, str]
    wechat_template_id: str
    variables: list[str] = Field(description="The variables this template may use")
    updated_at: datetime
    updated_by: str | None


def _recipient_filter(
    principal: Principal,
    customer_id: str | None,
    employee_id: str | None,
    department_id: str | None,
) -> tuple[str, str] | None:
    """Whose messages the caller asked for, after checking they may see them."""
    asked = [
        (k, v)
        for k, v in (
            ("customer", customer_id),
            ("employee", employee_id),
            ("department", department_id),
        )
        if v
    ]
    if len(asked) > 1:
        raise ApiError(
            422, "validation_error", "give one of customer_id, employee_id, department_id"
        )
    if principal.role == "customer":
        if asked and asked[0] != ("customer", principal.customer_id):
            raise ApiError(403, "forbidden", "a customer may only read their own messages")
        return "customer", str(principal.customer_id)
    if principal.role == "staff":
        if asked and asked[0] != ("employee", principal.employee_id):
            raise ApiError(403, "forbidden", "staff may only read their own messages")
        return "employee", str(principal.employee_id)
    return asked[0] if asked else None


def _may_read(principal: Principal, row: Any) -> bool:
    if principal.role == "customer":
        return row.recipient_kind == "customer" and row.recipient_id == principal.customer_id
    if principal.role == "staff":
        return row.recipient_kind == "employee" and row.recipient_id == principal.employee_id
    return True


def _out(row: Any) -> dict[str, Any]:
    return {
        "notification_id": row.notification_id,
        "recipient": {"kind": row.recipient_kind, "id": row.recipient_id},
        "customer_id": row.customer_id,
        "template": row.template,
        "category": row.category,
        "urgent": row.urgent,
        "status": row.status,
        "reason": row.reason,
        "channel": row.channel,
        # By position, as the channel's address: an openid of other than 28 characters, or
        # ending in "-", passed the log pattern whole.
        "address": (mask_openid if row.channel == "wechat" else mask_mobile)(row.address),
        "language": row.language,
        "body": row.body,
        "attempts": row.attempts,
        "source_event_id": row.source_event_id,
        "created_at": row.created_at,
        "deliver_after": row.deliver_after,
        "sent_at": row.sent_at,
    }


@router.get("/notifications", response_model=NotificationList)
async def list_notifications(
    principal: CurrentPrincipal,
    rt: RuntimeDep,
    customer_id: str | None = None,
    employee_id: str | None = None,
    department_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> NotificationList:
    """Messages to one recipient, newest first (customers and staff: their own only)."""
    wanted = _recipient_filter(principal, customer_id, employee_id, department_id)
    kind, rid = wanted or (None, None)
    async with rt.sessions() as session:
        rows = await store.list_notifications(session, kind, rid, limit)
    return NotificationList(items=[NotificationOut(**_out(r)) for r in rows])


@router.get("/notifications/{notification_id}", response_model=NotificationDetail)
async def get_notification(
    notification_id: str, principal: CurrentPrincipal, rt: RuntimeDep
) -> NotificationDetail:
    """One message with every delivery attempt and provider receipt."""
    async with rt.sessions() as session:
        row = await store.notification(session, notification_id)
        if row is None or not _may_read(principal, row):
            raise ApiError(404, "not_found", f"no notification {notification_id!r}")
        attempts = await store.attempts_of(session, notification_id)
        receipts = await store.receipts_of(session, notification_id)
    return NotificationDetail(
        **_out(row),
        attempt_log=[AttemptOut.model_validate(a, from_attributes=True) for a in attempts],
        receipts=[ReceiptOut.model_validate(r, from_attributes=True) for r in receipts],
    )


@router.put("/staff/{employee_id}", response_model=StaffOut)
async def put_staff(employee_id: str, body: StaffIn, _: CurrentOps, rt: RuntimeDep) -> StaffOut:
    """Create or replace an employee's contact details and roles (ops/admin)."""
    try:
        async with rt.uow() as tx:
            await register_staff(
                tx, [RegisterStaff(employee_id, **body.model_dump() | {"roles": tuple(body.roles)})]
            )
    except UnknownRole as exc:
        raise ApiError(422, "validation_error", str(exc)) from None
    return StaffOut(employee_id=employee_id, **body.model_dump())


@router.put("/departments/{department}/duty-contact", response_model=DutyContactOut)
async def put_duty_contact(
    department: str, body: DutyContactIn, _: CurrentOps, rt: RuntimeDep
) -> DutyContactOut:
    """Name the department's duty contact (ops/admin)."""
    async with rt.uow() as tx:
        await set_duty_contacts(tx, [SetDutyContact(department, **body.model_dump())])
    return DutyContactOut(department=department, **body.model_dump())


def _template_out(row: Any) -> TemplateOut:
    return TemplateOut(
        key=row.key,
        category=row.category,
        bodies=row.bodies,
        wechat_template_id=row.wechat_template_id,
        variables=sorted(TEMPLATE_VARIABLES.get(row.key, ())),
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


@router.get("/templates/{key}", response_model=TemplateOut)
async def get_template(key: str, _: CurrentOps, rt: RuntimeDep) -> TemplateOut:
    """A template's texts, category and allowed variables (ops/admin)."""
    async with rt.sessions() as session:
        row = await store.template(session, key)
    if row is None:
        raise ApiError(404, "not_found", f"no template {key!r}")
    return _template_out(row)


@router.put("/templates/{key}", response_model=TemplateOut)
async def put_template(
    key: str, body: TemplateIn, principal: CurrentAdmin, rt: RuntimeDep
) -> TemplateOut:
    """Replace a template's texts (admin); unknown variables are rejected with 422."""
    if key not in TEMPLATE_VARIABLES:
        raise ApiError(404, "not_found", f"no template {key!r}")
    command = EditTemplate(
        key, body.category, body.bodies, body.wechat_template_id, principal.subject
    )
    try:
        async with rt.uow() as tx:
            row = await edit_template(tx, command)
    except TemplateError as exc:
        raise ApiError(422, "invalid_template", exc.detail, unknown_variables=exc.unknown) from None
    return _template_out(row)


class SandboxMessage(BaseModel):
    notification_id: str
    channel: str
    address: str
    body: str
    delivered_at: datetime


@router.get("/sandbox/messages", response_model=dict[str, list[SandboxMessage]])
async def sandbox_messages(
    _: CurrentOps, rt: RuntimeDep, address: str | None = None
) -> dict[str, list[SandboxMessage]]:
    """What the sandbox provider 'delivered', newest first (ops/admin; dev aid)."""
    async with rt.sessions() as session:
        rows = await store.sandbox_messages_to(session, address)
    return {"items": [SandboxMessage.model_validate(r, from_attributes=True) for r in rows]}
