"""Complaint events, commands and timers → domain → store + outbox, in one transaction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any

from services.complaints import store
from services.complaints.domain import (
    Complaint,
    ComplaintPolicy,
    Filing,
    InvalidCommand,
    Level,
    PastComplaint,
    ScheduleTimer,
    SlaAlert,
    TimerInstruction,
    file_complaint,
    grade,
    is_repeat,
)
from shared import ratelimit
from shared.contracts import Envelope
from shared.contracts.events import (
    ComplaintCallbackDue,
    ComplaintCompensation,
    ComplaintFiled,
    ComplaintUpdated,
    OpsAlert,
    SlaBreached,
    SlaClock,
    SlaWarning,
    TierChanged,
)
from shared.contracts.topics import (
    COMPLAINT_CALLBACK_DUE,
    COMPLAINT_UPDATED,
    OPS_ALERTS,
    SLA_BREACHED,
    SLA_WARNING,
)
from shared.db import lock_keys
from shared.ids import new_id
from shared.messaging.consumer import RejectedEvent
from shared.ratelimit import Allowance, RateLimit, RateLimited
from shared.timers import DueTimer
from shared.unit_of_work import Tx


class ComplaintNotFound(LookupError):
    """No complaint with that id."""


class DuplicateComplaintRef(Exception):
    """A complaint with this complaint_ref was already filed."""

    def __init__(self, complaint_ref: str, complaint_id: str) -> None:
        super().__init__(f"complaint_ref {complaint_ref!r} was already filed as {complaint_id}")
        self.complaint_id = complaint_id


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was already used for a different request."""


def snapshot(c: Complaint, now: datetime) -> ComplaintUpdated:
    """The full snapshot published after each change."""
    return ComplaintUpdated(
        complaint_id=c.complaint_id,
        complaint_ref=c.complaint_ref,
        customer_id=c.customer_id,
        status=c.status,
        severity=c.severity,
        category=c.category,
        owner_id=c.owner_id,
        owner_kind=c.owner_kind,
        department=c.department,
        handler_id=c.handler_id,
        resolution_due_at=c.resolution_due_at(now),
        regulatory_due_at=c.regulatory_due_at,
        change=c.last_change,
        channel=c.channel,
        branch_id=c.branch_id,
        received_at=c.received_at,
        response_due_at=c.response_due_at,
        sla_paused=c.resolution_clock.paused_since is not None,
        is_repeat=c.is_repeat,
        escalation_level=c.escalation_level,
        flagged_for_review=c.flagged_for_review,
        resolved_at=c.resolved_at,
        compensation=tuple(
            ComplaintCompensation(
                kind=g.kind,
                points=g.points,
                amount=g.amount,
                loss_amount=g.loss_amount,
                apology_visit=g.apology_visit,
                granted_at=g.at,
            )
            for g in c.compensation
        ),
    )


async def apply_timers(
    tx: Tx, instructions: Sequence[TimerInstruction], *, new: bool = False, at_commit: bool = False
) -> None:
    """Turn the domain's timer instructions into durable timers: each run of schedules, or
    of cancels, of one kind goes in one statement, and the runs keep their order. `new`:
    the timers are of complaints filed in this transaction (see `Tx.schedule_new`).
    `at_commit`: schedules are written with the commit (`Tx.schedule_at_commit`), for
    timers the transaction does not read back."""
    for (_, kind), run in groupby(instructions, key=lambda i: (type(i), i.kind)):
        batch = list(run)
        schedules = [
            (i.key, i.due_at, dict(i.payload)) for i in batch if isinstance(i, ScheduleTimer)
        ]
        if not schedules:
            await tx.cancel_many(kind, (i.key for i in batch))
        elif at_commit:
            tx.schedule_at_commit(kind, schedules)
        else:
            await (tx.schedule_new if new else tx.schedule_many)(kind, schedules)


def publish(tx: Tx, c: Complaint, causation: Envelope[Any] | None = None) -> None:
    tx.emit(COMPLAINT_UPDATED, snapshot(c, tx.now), key=c.customer_id, causation=causation)


async def file_complaints(
    tx: Tx,
    filings: Sequence[tuple[Filing, Envelope[Any] | None, str]],
    policy: ComplaintPolicy,
    *,
    allowance: Allowance | None = None,
) -> list[Complaint | DuplicateComplaintRef | RateLimited]:
    """File new complaints (filing, causing event, new id); a known complaint_ref is a duplicate.

    With an `allowance`, each filing takes one use of its customer's filing bucket first
    (refused past the limit).
    """
    if not filings:
        return []
    # A repeat is judged on the customer's earlier complaints: a filing for the same
    # customer in flight elsewhere (the channel topic and the API, another replica) is
    # waited for, and then seen, instead of both passing as first complaints.
    await lock_keys(tx.session, "complaint-filing", (f.customer_id for f, _, _ in filings))
    context = await store.filing_context(
        tx.session,
        (f.complaint_ref for f, _, _ in filings),
        (f.customer_id for f, _, _ in filings),
        store.since_for_repeats((f.received_at for f, _, _ in filings), policy.repeat_window_days),
    )
    existing, tiers, earlier = context.ids_by_ref, context.tiers, context.past
    results: list[Complaint | DuplicateComplaintRef | RateLimited] = []
    filed: list[Complaint] = []
    timers: list[TimerInstruction] = []
    for filing, event, complaint_id in filings:
        if filing.complaint_ref in existing:
            results.append(
                DuplicateComplaintRef(filing.complaint_ref, existing[filing.complaint_ref])
            )
            continue
        refused = allowance.take(filing_bucket(filing.customer_id)) if allowance else None
        if refused is not None:
            results.append(refused)
            continue
        repeat = is_repeat(filing.customer_id, filing.category, filing.received_at, earlier, policy)
        grading = grade(
            filing.category,
            filing.channel,
            filing.amount_involved,
            tiers.get(filing.customer_id),
            repeat,
            policy,
        )
        complaint, instructions = file_complaint(complaint_id, filing, grading, repeat, policy)
        existing[filing.complaint_ref] = complaint_id
        earlier.append(PastComplaint(filing.customer_id, filing.category, filing.received_at))
        publish(tx, complaint, event)
        filed.append(complaint)
        timers += instructions
        results.append(complaint)
    await store.save(tx.session, filed, tx.now)
    await apply_timers(tx, timers, new=True)
    return results


def filing_bucket(customer_id: str) -> str:
    """The rate-limit bucket of a customer's filings through the API."""
    return f"complaint-filing:{customer_id}"


@dataclass(frozen=True)
class ApiFiling:
    """One POST /complaints: the filing, who asks, and its Idempotency-Key if any."""

    filing: Filing
    principal: str
    idempotency_key: str | None
    request_hash: str


@dataclass(frozen=True)
class Filed:
    """A POST /complaints answered: the complaint, whether it is an earlier one replayed
    for a retried Idempotency-Key, and the transaction's time."""

    complaint: Complaint
    replayed: bool
    at: datetime


@dataclass
class FileFromApi:
    """Batch handler of POST /complaints (run by a GroupCommit): files the requests of one
    transaction, each refused alone (rate limit, duplicate ref, reused key) if it must be.

    Filings are rate-limited per customer (`limit`): every filing can trigger an SMS, so
    an unlimited API would let anyone pump messages to a number. A retried
    Idempotency-Key returns the earlier complaint, as replayed; a key's claim is kept only
    if its request filed a complaint.
    """

    policy: ComplaintPolicy
    limit: RateLimit | None = None

    async def __call__(self, tx: Tx, requests: Sequence[ApiFiling]) -> list[Filed | Exception]:
        ids = [new_id() for _ in requests]
        claims = {
            n: (r.principal, r.idempotency_key, r.request_hash, ids[n])
            for n, r in enumerate(requests)
            if r.idempotency_key
        }
        holders = await store.claim_idempotency_keys(tx.session, list(claims.values()), tx.now)
        earlier = {  # request → (hash, complaint id) of the request that used its key before
            n: holders[principal, key]
            for n, (principal, key, _, complaint_id) in claims.items()
            if holders[principal, key][1] != complaint_id
        }
        fresh = [n for n in range(len(requests)) if n not in earlier]
        allowance = None
        if self.limit is not None:
            wanted = Counter(filing_bucket(requests[n].filing.customer_id) for n in fresh)
            allowance = await ratelimit.claim(tx.session, self.limit, tx.now, wanted)
        filings = [(requests[n].filing, None, ids[n]) for n in fresh]
        results = await file_complaints(tx, filings, self.policy, allowance=allowance)
        outcomes: dict[int, Filed | Exception] = {
            n: Filed(result, False, tx.now) if isinstance(result, Complaint) else result
            for n, result in zip(fresh, results, strict=True)
        }
        refused = [claims[n] for n in fresh if n in claims and not isinstance(outcomes[n], Filed)]
        await store.release_idempotency_keys(tx.session, refused)
        if allowance is not None:
            await allowance.give_back_unused(tx.session)
        outcomes |= await self._replays(tx, requests, ids, earlier, outcomes)
        return [outcomes[n] for n in range(len(requests))]

    @staticmethod
    async def _replays(
        tx: Tx,
        requests: Sequence[ApiFiling],
        ids: list[str],
        earlier: dict[int, tuple[str, str]],
        outcomes: dict[int, Filed | Exception],
    ) -> dict[int, Filed | Exception]:
        """Requests retrying a key: the earlier answer, or a refusal if the body changed."""
        in_batch = {complaint_id: n for n, complaint_id in enumerate(ids)}
        stored = await store.get_many(
            tx.session, (cid for _, cid in earlier.values() if cid not in in_batch)
        )
        replays: dict[int, Filed | Exception] = {}
        for n, (request_hash, complaint_id) in earlier.items():
            first = outcomes.get(in_batch.get(complaint_id, -1))
            if request_hash != requests[n].request_hash:
                replays[n] = IdempotencyKeyReused(
                    "Idempotency-Key was already used with a different request body"
                )
            elif isinstance(first, Filed):  # both in this batch: the first was filed
                replays[n] = Filed(first.complaint, True, tx.now)
            elif first is not None:  # ... and refused: so is the retry
                replays[n] = first
            elif complaint_id in stored:
                replays[n] = Filed(stored[complaint_id], True, tx.now)
            else:
                replays[n] = ComplaintNotFound(complaint_id)
        return replays


def filing_of(data: ComplaintFiled) -> Filing:
    """The FileComplaint command of a ComplaintFiled event (raises InvalidCommand)."""
    return Filing(
        complaint_ref=data.complaint_ref,
        customer_id=data.customer_id,
        channel=data.channel,
        category=data.category,
        description=data.description,
        amount_involved=data.amount_involved,
        received_by=data.received_by,
        branch_id=data.branch_id,
        received_at=data.received_at,
    )


@dataclass
class FileComplaintsFromChannels:
    """Batch handler of channels.complaint-filed.v1; idempotent on complaint_ref."""

    policy: ComplaintPolicy

    async def __call__(self, tx: Tx, events: list[Envelope[Any]]) -> None:
        filings = []
        for event in events:
            try:
                filing = filing_of(event.data)
                filing.check_received_by(tx.now)
                filings.append((filing, event, new_id()))
            except InvalidCommand as exc:
                raise RejectedEvent(
                    event, f"data.{exc.field}: {exc.problem}", "invalid_complaint"
                ) from None
        await file_complaints(tx, filings, self.policy)


async def apply_tier_changes(tx: Tx, events: list[Envelope[Any]]) -> None:
    """Keep the local read model of customer tiers (no calls to tiering)."""
    latest: dict[str, TierChanged] = {}
    for event in events:
        data: TierChanged = event.data
        current = latest.get(data.customer_id)
        if current is None or data.evaluated_at >= current.evaluated_at:
            latest[data.customer_id] = data
    await store.save_tiers(
        tx.session,
        [
            {"customer_id": d.customer_id, "tier": d.tier, "evaluated_at": d.evaluated_at}
            for d in latest.values()
        ],
    )


Command = Callable[[Complaint, datetime], Sequence[TimerInstruction] | None]


async def act(tx: Tx, complaint_id: str, command: Command) -> Complaint:
    """Run one command on a locked complaint; save, emit the snapshot, apply its timers."""
    loaded = await store.load_for_update(tx.session, [complaint_id])
    complaint = loaded.get(complaint_id)
    if complaint is None:
        raise ComplaintNotFound(complaint_id)
    instructions = command(complaint, tx.now) or []
    await store.save(tx.session, [complaint], tx.now)
    await apply_timers(tx, instructions)
    publish(tx, complaint)
    return complaint


def _sla_timer(timer: DueTimer) -> tuple[str, SlaClock, Level, int]:
    """(complaint, clock, level, generation) of a SLA timer: the level is in its payload."""
    complaint_id, clock, generation = timer.key.rsplit(":", 2)
    return complaint_id, clock, timer.payload["level"], int(generation)  # type: ignore[return-value]


def _alert_payload(c: Complaint, alert: SlaAlert) -> dict[str, Any]:
    return {
        "complaint_id": c.complaint_id,
        "customer_id": c.customer_id,
        "severity": c.severity,
        "clock": alert.clock,
        "due_at": alert.due_at,
        "owner_id": c.owner_id,
        "owner_kind": c.owner_kind,
        "handler_id": c.handler_id,
        "department": c.department,
        "branch_id": c.branch_id,
    }


@dataclass(frozen=True)
class FireSlaTimers:
    """SLA thresholds reached: warning or breach, each once per complaint, clock and level;
    each schedules the timer of its clock's next level."""

    policy: ComplaintPolicy

    async def __call__(self, tx: Tx, due: list[DueTimer]) -> None:
        keys = [_sla_timer(t) for t in due]
        complaints = await store.load_for_update(tx.session, (k[0] for k in keys))
        advanced: dict[tuple[str, SlaClock], Complaint] = {}
        breached: dict[tuple[str, SlaClock, int], list[Complaint]] = {}
        for complaint_id, clock, level, generation in keys:  # claimed in due order
            c = complaints.get(complaint_id)
            alert = c.sla_due(tx.now, clock, level, generation) if c else None
            if c is None or alert is None:
                continue  # stale timer: the clock was met, paused or moved since
            advanced[(c.complaint_id, clock)] = c
            _emit_alert(tx, c, alert, breached)
        for (department, breached_clock, escalation), group in breached.items():
            _alert_ops(tx, department, breached_clock, escalation, group)
        # Written at commit, in one statement with the fired timers' delete: nothing here
        # reads them back. Each clock's timer moves on to its next level (the timer worker
        # leaves a timer scheduled again pending); one that fired its last level is deleted.
        changed = {c.complaint_id: c for c in advanced.values()}
        tx.write_at_commit(store.fired_update(list(changed.values()), tx.now))
        await apply_timers(
            tx,
            [i for (_, clock), c in advanced.items() for i in c.sla_timers(clock, self.policy)],
            at_commit=True,
        )


def _emit_alert(
    tx: Tx,
    c: Complaint,
    alert: SlaAlert,
    breached: dict[tuple[str, SlaClock, int], list[Complaint]],
) -> None:
    """A warning, or a breach (with the complaint's snapshot, gathered for the ops alert)."""
    if alert.escalation_level == 0:
        tx.emit(SLA_WARNING, SlaWarning(**_alert_payload(c, alert)), key=c.customer_id)
        return
    tx.emit(
        SLA_BREACHED,
        SlaBreached(
            **_alert_payload(c, alert),
            escalation_level=alert.escalation_level,
            overdue_by_seconds=int(alert.overdue_by.total_seconds()),
        ),
        key=c.customer_id,
    )
    breached.setdefault((c.department, alert.clock, alert.escalation_level), []).append(c)
    publish(tx, c)


def _alert_ops(
    tx: Tx, department: str, clock: SlaClock, level: int, breached: list[Complaint]
) -> None:
    """One ops alert for a department's complaints whose `clock` reached an escalation
    level in the same firing: a lone breach as it always was; a mass of them (a deadline
    shared by thousands) as one alert per department, clock and level, not thousands."""
    first = breached[0]
    details: dict[str, Any] = {
        "department": department,
        "clock": clock,
        "escalation_level": level,
        "count": len(breached),
        "complaint_ids": [c.complaint_id for c in breached],
    }
    if len(breached) == 1:
        details["complaint_id"] = first.complaint_id
        message = (
            f"complaint {first.complaint_id} ({first.severity}) breached its {clock} "
            f"deadline, escalation level {level}"
        )
    else:
        message = (
            f"{len(breached)} complaints in {department} breached their {clock} deadline, "
            f"escalation level {level}"
        )
    tx.emit(
        OPS_ALERTS,
        OpsAlert(
            service="complaints",
            severity="critical" if level == 2 else "warning",
            kind="sla_breach",
            message=message,
            details=details,
        ),
        key=first.customer_id if len(breached) == 1 else department,
    )


def _parse_callback_key(key: str) -> tuple[str, int, int]:
    complaint_id, cycle, sequence = key.rsplit(":", 2)
    return complaint_id, int(cycle), int(sequence)


async def fire_callback_timers(tx: Tx, due: list[DueTimer]) -> None:
    """Post-resolution callbacks due: ask the first-contact owner to call the customer."""
    keys = [_parse_callback_key(t.key) for t in due]
    complaints = await store.load_for_update(tx.session, (k[0] for k in keys))
    changed: dict[str, Complaint] = {}
    for complaint_id, cycle, sequence in keys:
        c = complaints.get(complaint_id)
        callback = c.callback_due(tx.now, cycle, sequence) if c else None
        if c is None or callback is None:
            continue
        changed[c.complaint_id] = c
        tx.emit(
            COMPLAINT_CALLBACK_DUE,
            ComplaintCallbackDue(
                customer_id=c.customer_id,
                reason="complaint_followup",
                complaint_id=c.complaint_id,
                sequence=sequence,
                assignee_id=c.owner_id,
                due_at=callback.due_at,
                assignee_kind=c.owner_kind,
            ),
            key=c.customer_id,
        )
    tx.write_at_commit(store.fired_update(list(changed.values()), tx.now))
