"""Complaints HTTP API: parse, authorise, call a handler (decisions live in handlers/domain)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from services.complaints import handlers, store
from services.complaints.domain import (
    Complaint,
    ComplaintConflict,
    ComplaintPolicy,
    Filing,
    IllegalTransition,
    InvalidCommand,
)
from services.complaints.handlers import (
    ApiFiling,
    Command,
    ComplaintNotFound,
    DuplicateComplaintRef,
    Filed,
    IdempotencyKeyReused,
)
from services.complaints.settings import ComplaintsSettings
from services.complaints.views import (
    CallbackRequest,
    CompensationRequest,
    ComplaintList,
    ComplaintStats,
    ComplaintView,
    ExtendRegulatoryRequest,
    FileComplaintRequest,
    ReasonRequest,
    ResolveRequest,
    SeverityRequest,
    TransferRequest,
    complaint_view,
    stats_view,
)
from shared.contracts import Timestamp
from shared.contracts.events import ComplaintChannel, ComplaintStatus, Severity, StaffKind
from shared.group_commit import GroupCommit
from shared.service import Runtime
from shared.unit_of_work import Tx
from shared.web.app import RuntimeDep
from shared.web.auth import (
    CurrentOps,
    CurrentPrincipal,
    CurrentStaff,
    Principal,
    authorize_customer,
)
from shared.web.errors import ApiError

router = APIRouter(tags=["complaints"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


@contextmanager
def domain_errors() -> Iterator[None]:
    """Domain refusals as HTTP: 404 unknown, 409 illegal/conflicting, 422 bad field."""
    try:
        yield
    except ComplaintNotFound as exc:
        raise ApiError(404, "not_found", f"no complaint {exc.args[0]!r}") from None
    except IllegalTransition as exc:
        raise ApiError(409, "illegal_transition", str(exc), current_status=exc.status) from None
    except ComplaintConflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except DuplicateComplaintRef as exc:
        raise ApiError(
            409, "duplicate_complaint_ref", str(exc), complaint_id=exc.complaint_id
        ) from None
    except IdempotencyKeyReused as exc:
        raise ApiError(422, "idempotency_key_reused", str(exc)) from None
    except InvalidCommand as exc:
        raise ApiError(422, "validation_error", f"body.{exc.field}: {exc.problem}") from None


def _settings(rt: Runtime) -> ComplaintsSettings:
    assert isinstance(rt.settings, ComplaintsSettings)
    return rt.settings


def _filing(body: FileComplaintRequest, who: Principal, rt: Runtime, now: datetime) -> Filing:
    settings = _settings(rt)
    if who.role == "customer":
        if body.customer_id not in (None, who.customer_id):
            raise ApiError(403, "forbidden", "a customer may only file their own complaints")
        customer_id = str(who.customer_id)
        # The app is the customer's channel, and a complaint filed there is received now:
        # a customer's own `regulator` channel or backdated receipt would grade and time
        # it as one that is not.
        if body.channel not in (None, "app"):
            problem = "body.channel: a customer files through the app ('app')"
            raise ApiError(422, "validation_error", problem)
        if body.received_at is not None:
            problem = "body.received_at: not for customers (filed in the app, received now)"
            raise ApiError(422, "validation_error", problem)
        received_by = settings.complaints_self_service_owner
        owner_kind: StaffKind = "department"
        channel: ComplaintChannel = "app"
    else:
        if body.customer_id is None:
            raise ApiError(422, "validation_error", "body.customer_id: required for staff")
        if body.channel is None:
            raise ApiError(422, "validation_error", "body.channel: required for staff")
        customer_id, received_by = body.customer_id, str(who.employee_id)
        owner_kind = "employee"
        channel = body.channel
    with domain_errors():
        filing = Filing(
            complaint_ref=body.complaint_ref or f"API-{uuid.uuid4().hex}",
            customer_id=str(customer_id),
            channel=channel,
            category=body.category,
            description=body.description,
            amount_involved=body.amount_involved,
            received_by=str(received_by),
            branch_id=body.branch_id or settings.complaints_self_service_branch,
            received_at=body.received_at or now,
            owner_kind=owner_kind,
        )
        filing.check_received_by(now)
    return filing


def _request_hash(body: FileComplaintRequest) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@router.post("/complaints", status_code=201, response_model=ComplaintView)
async def file_complaint(
    body: FileComplaintRequest,
    who: CurrentPrincipal,
    rt: RuntimeDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> ComplaintView:
    """File a complaint (customer app or staff desk); `Idempotency-Key` makes retries safe."""
    if who.role not in ("customer", "staff"):
        raise ApiError(403, "forbidden", f"role {who.role!r} may not file complaints")
    request = ApiFiling(
        _filing(body, who, rt, rt.clock.now()),
        principal=who.subject,
        idempotency_key=idempotency_key,
        request_hash=_request_hash(body) if idempotency_key else "",
    )
    filings: GroupCommit[ApiFiling, Filed] = rt.state["filings"]
    with domain_errors():
        filed = await filings.submit(request)
    if filed.replayed:
        response.status_code = 200
    return complaint_view(filed.complaint, filed.at, detail=True)


@router.get("/complaints/stats", response_model=ComplaintStats)
async def complaint_stats(
    _: CurrentOps,
    rt: RuntimeDep,
    since: Timestamp | None = None,
    until: Timestamp | None = None,
) -> ComplaintStats:
    """SLA compliance %, handling time, repeat rate and NPS by severity, department, branch."""
    now = rt.clock.now()
    async with rt.sessions() as session:
        counts, handling = await store.stats_rows(
            session, now, since or now - timedelta(days=3650), until or now + timedelta(days=1)
        )
    return stats_view(counts, handling)


@router.get("/complaints", response_model=ComplaintList)
async def list_complaints(
    who: CurrentPrincipal,
    rt: RuntimeDep,
    status: ComplaintStatus | None = None,
    severity: Severity | None = None,
    department: str | None = None,
    overdue: bool | None = None,
    customer_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> ComplaintList:
    """Complaints by status/severity/department/overdue; customers see only their own."""
    if who.role == "customer":
        authorize_customer(who, customer_id or str(who.customer_id))
        customer_id = who.customer_id
    now = rt.clock.now()
    async with rt.sessions() as session:
        found = await store.search(
            session,
            now,
            customer_id=customer_id,
            status=status,
            severity=severity,
            department=department,
            overdue=overdue,
            limit=limit,
        )
    return ComplaintList(items=[complaint_view(c, now) for c in found])


@router.get("/complaints/{complaint_id}", response_model=ComplaintView)
async def get_complaint(complaint_id: str, who: CurrentPrincipal, rt: RuntimeDep) -> ComplaintView:
    """Where the complaint is now, its deadlines, the full trail and the callbacks."""
    async with rt.sessions() as session:
        complaint = await store.get(session, complaint_id)
    if complaint is None:
        raise ApiError(404, "not_found", f"no complaint {complaint_id!r}")
    authorize_customer(who, complaint.customer_id)
    return complaint_view(complaint, rt.clock.now(), detail=True)


async def _act(rt: Runtime, complaint_id: str, command: Command) -> ComplaintView:
    async def work(tx: Tx) -> tuple[Complaint, datetime]:
        return await handlers.act(tx, complaint_id, command), tx.now

    # Run again after a deadlock: an action locks the complaint, then its timers; a timer
    # firing for it has locked them in the opposite order.
    with domain_errors():
        complaint, now = await rt.uow.run(work)
    return complaint_view(complaint, now, detail=True)


def _policy(rt: Runtime) -> ComplaintPolicy:
    policy: ComplaintPolicy = rt.state["policy"]
    return policy


@router.post("/complaints/{complaint_id}/acknowledge", response_model=ComplaintView)
async def acknowledge(complaint_id: str, who: CurrentStaff, rt: RuntimeDep) -> ComplaintView:
    """First response given to the customer (meets the response clock)."""
    by = str(who.employee_id)
    return await _act(rt, complaint_id, lambda c, now: c.acknowledge(now, by))


@router.post("/complaints/{complaint_id}/start", response_model=ComplaintView)
async def start(complaint_id: str, who: CurrentStaff, rt: RuntimeDep) -> ComplaintView:
    """A handler starts work: acknowledged → in_progress."""
    by = str(who.employee_id)
    return await _act(rt, complaint_id, lambda c, now: c.start(now, by))


@router.post("/complaints/{complaint_id}/transfer", response_model=ComplaintView)
async def transfer(
    complaint_id: str, body: TransferRequest, who: CurrentStaff, rt: RuntimeDep
) -> ComplaintView:
    """Hand over to another department and/or handler; appended to the trail."""
    by = str(who.employee_id)
    return await _act(
        rt,
        complaint_id,
        lambda c, now: c.transfer(now, by, body.department, body.handler_id, body.reason),
    )


@router.post("/complaints/{complaint_id}/await-customer", response_model=ComplaintView)
async def await_customer(complaint_id: str, who: CurrentStaff, rt: RuntimeDep) -> ComplaintView:
    """Waiting for the customer: the internal SLA clocks pause."""
    by = str(who.employee_id)
    return await _act(rt, complaint_id, lambda c, now: c.await_customer(now, by))


@router.post("/complaints/{complaint_id}/resume", response_model=ComplaintView)
async def resume(complaint_id: str, who: CurrentStaff, rt: RuntimeDep) -> ComplaintView:
    """The customer answered: the clocks run again with the time they had left."""
    by, policy = str(who.employee_id), _policy(rt)
    return await _act(rt, complaint_id, lambda c, now: c.resume(now, by, policy))


@router.post("/complaints/{complaint_id}/resolve", response_model=ComplaintView)
async def resolve(
    complaint_id: str, body: ResolveRequest, who: CurrentStaff, rt: RuntimeDep
) -> ComplaintView:
    """Resolved (resolution and root cause required); callbacks on day 3, 7 and 30."""
    by, policy = str(who.employee_id), _policy(rt)
    return await _act(
        rt,
        complaint_id,
        lambda c, now: c.resolve(now, by, body.resolution, body.root_cause, policy),
    )


@router.post("/complaints/{complaint_id}/close", response_model=ComplaintView)
async def close(complaint_id: str, who: CurrentStaff, rt: RuntimeDep) -> ComplaintView:
    by = str(who.employee_id)
    return await _act(rt, complaint_id, lambda c, now: c.close(now, by))


@router.post("/complaints/{complaint_id}/reopen", response_model=ComplaintView)
async def reopen(
    complaint_id: str, who: CurrentStaff, rt: RuntimeDep, body: ReasonRequest | None = None
) -> ComplaintView:
    """Reopen a resolved/closed complaint: the resolution clock restarts, same severity."""
    by, policy, reason = str(who.employee_id), _policy(rt), body.reason if body else ""
    return await _act(rt, complaint_id, lambda c, now: c.reopen(now, by, reason, policy))


@router.post("/complaints/{complaint_id}/severity", response_model=ComplaintView)
async def change_severity(
    complaint_id: str, body: SeverityRequest, who: CurrentStaff, rt: RuntimeDep
) -> ComplaintView:
    """Regrade with a reason (audited); deadlines are recomputed from receipt."""
    by, policy = str(who.employee_id), _policy(rt)
    return await _act(
        rt,
        complaint_id,
        lambda c, now: c.change_severity(now, by, body.severity, body.reason, policy),
    )


@router.post("/complaints/{complaint_id}/extend-regulatory", response_model=ComplaintView)
async def extend_regulatory(
    complaint_id: str, body: ExtendRegulatoryRequest, who: CurrentStaff, rt: RuntimeDep
) -> ComplaintView:
    """Extend the regulatory reply deadline (15 → 30 → 60 days) with the approver recorded."""
    by, policy = str(who.employee_id), _policy(rt)
    return await _act(
        rt,
        complaint_id,
        lambda c, now: c.extend_regulatory(now, by, body.approved_by, body.reason, policy),
    )


@router.post("/complaints/{complaint_id}/callbacks/{sequence}", response_model=ComplaintView)
async def record_callback(
    complaint_id: str, sequence: int, body: CallbackRequest, who: CurrentStaff, rt: RuntimeDep
) -> ComplaintView:
    """Record a callback: reached, NPS 0-10, note (NPS 0-6 flags the complaint)."""
    by, policy = str(who.employee_id), _policy(rt)
    return await _act(
        rt,
        complaint_id,
        lambda c, now: c.record_callback(
            now, by, sequence, body.reached, body.nps, body.note, policy
        ),
    )


@router.post("/complaints/{complaint_id}/compensation", response_model=ComplaintView)
async def grant_compensation(
    complaint_id: str, body: CompensationRequest, who: CurrentStaff, rt: RuntimeDep
) -> ComplaintView:
    """Grant the compensation the rules give (points by severity, or 120% of a loss)."""
    by, policy = str(who.employee_id), _policy(rt)

    def grant(c: Complaint, now: datetime) -> None:
        c.grant_compensation(now, by, body.kind, body.loss_amount, policy)

    return await _act(rt, complaint_id, grant)
