"""Complaint handling rules (DOMAIN.md §2): grading, the complaint aggregate, SLA clocks.

Pure code: no I/O. Commands on a `Complaint` change it in memory and return the timer
instructions (schedule/cancel) the handler turns into durable timers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from shared.clock import CLOCK_SKEW
from shared.contracts.events import (
    ComplaintCategory,
    ComplaintChannel,
    ComplaintStatus,
    Severity,
    SlaClock,
    StaffKind,
    Tier,
)
from shared.contracts.types import MONEY_LIMIT

FUND_SECURITY: frozenset[str] = frozenset(
    {"card_fraud", "unauthorized_transaction", "account_security"}
)
HEAD_OFFICE_RISK = "head_office_risk"
DEFAULT_ROUTING: dict[str, str] = {
    "transfer_limit": "e_banking",
    "wealth_product": "wealth_management",
    "processing_delay": "operations",
    "service_attitude": "branch_service",
    "fees": "retail_banking",
    "system_outage": "it_operations",
    "other": "customer_service",
}
SEVERITIES: tuple[Severity, ...] = ("normal", "urgent", "major")
CENT = Decimal("0.01")
# A receipt time is refused before this (the deadlines and the repeat window are computed
# from it) and more than CLOCK_SKEW ahead of now.
EARLIEST_RECEIPT = datetime(2000, 1, 1, tzinfo=UTC)
TIMER_SLA = "complaints.sla"
TIMER_CALLBACK = "complaints.callback"

Level = Literal["warning", "breach_1", "breach_2"]
LEVELS: tuple[Level, ...] = ("warning", "breach_1", "breach_2")
CompensationKind = Literal["service_flaw", "fund_loss"]
Action = Literal[
    "acknowledge",
    "start",
    "transfer",
    "await_customer",
    "resume",
    "resolve",
    "close",
    "reopen",
    "change_severity",
    "extend_regulatory",
]

OPEN: frozenset[ComplaintStatus] = frozenset(
    {"received", "acknowledged", "in_progress", "awaiting_customer"}
)
# The state machine: which statuses each command may start from, and where it leads
# (None: the status does not change).
TRANSITIONS: dict[Action, tuple[frozenset[ComplaintStatus], ComplaintStatus | None]] = {
    "acknowledge": (frozenset({"received"}), "acknowledged"),
    "start": (frozenset({"acknowledged"}), "in_progress"),
    # From `acknowledged`, waiting and resolving start the work implicitly (DESIGN.md's
    # API has no separate "start"; `start` exists for desks that record it).
    "await_customer": (frozenset({"acknowledged", "in_progress"}), "awaiting_customer"),
    "resume": (frozenset({"awaiting_customer"}), "in_progress"),
    "resolve": (frozenset({"acknowledged", "in_progress", "awaiting_customer"}), "resolved"),
    "close": (frozenset({"resolved"}), "closed"),
    "reopen": (frozenset({"resolved", "closed"}), "in_progress"),
    "transfer": (OPEN, None),
    "change_severity": (OPEN, None),
    "extend_regulatory": (OPEN, None),
}


class IllegalTransition(Exception):
    """The command is not allowed in the complaint's current status (HTTP 409)."""

    def __init__(self, action: str, status: ComplaintStatus) -> None:
        super().__init__(f"cannot {action} a complaint that is {status}")
        self.action = action
        self.status = status


class ComplaintConflict(Exception):
    """The command conflicts with what was already recorded (HTTP 409)."""


class InvalidCommand(ValueError):
    """A command field breaks an input rule; `field` names it (HTTP 422)."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem


# --- policy and grading -------------------------------------------------------------------


def _hours(normal: float, urgent: float, major: float) -> dict[Severity, float]:
    return {"normal": normal, "urgent": urgent, "major": major}


@dataclass(frozen=True)
class ComplaintPolicy:
    """Every configurable number of §2, with the bank's defaults."""

    response_hours: Mapping[Severity, float] = field(default_factory=lambda: _hours(24, 4, 1))
    resolution_hours: Mapping[Severity, float] = field(default_factory=lambda: _hours(72, 24, 6))
    warning_ratio: float = 0.8
    second_escalation_ratio: float = 1.5
    urgent_amount: Decimal = Decimal("10000")
    repeat_window_days: int = 90
    regulatory_days: int = 15
    regulatory_extension_days: tuple[int, ...] = (30, 60)
    callback_days: tuple[int, ...] = (3, 7, 30)
    service_flaw_points: Mapping[Severity, int] = field(
        default_factory=lambda: {"normal": 500, "urgent": 1000, "major": 2000}
    )
    fund_loss_rate: Decimal = Decimal("1.20")
    detractor_max_nps: int = 6
    routing: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ROUTING))

    def __post_init__(self) -> None:
        if not 0 < self.warning_ratio < 1 < self.second_escalation_ratio:
            raise ValueError("need 0 < warning_ratio < 1 < second_escalation_ratio")
        for name in ("response_hours", "resolution_hours", "service_flaw_points"):
            table = getattr(self, name)
            if set(table) != set(SEVERITIES) or any(v <= 0 for v in table.values()):
                raise ValueError(f"{name} needs a positive value for each of {SEVERITIES}")
        if len(self.callback_days) != 3:
            raise ValueError("callback_days needs exactly three days (sequences 1, 2, 3)")

    def response_window(self, severity: Severity) -> timedelta:
        return timedelta(hours=self.response_hours[severity])

    def resolution_window(self, severity: Severity) -> timedelta:
        return timedelta(hours=self.resolution_hours[severity])

    def ratio(self, level: Level) -> float:
        return {"warning": self.warning_ratio, "breach_1": 1.0}.get(
            level, self.second_escalation_ratio
        )


@dataclass(frozen=True)
class Grading:
    """The severity and department a complaint starts with, and why."""

    severity: Severity
    department: str
    reasons: tuple[str, ...]


def grade(
    category: ComplaintCategory,
    channel: ComplaintChannel,
    amount_involved: Decimal | None,
    tier: Tier | None,
    is_repeat: bool,
    policy: ComplaintPolicy,
) -> Grading:
    """The default grading rules: fund security, then regulator/media, then urgency."""
    department = policy.routing.get(category, "customer_service")
    if category in FUND_SECURITY:
        return Grading("major", HEAD_OFFICE_RISK, ("fund_security",))
    if channel in ("regulator", "media"):
        return Grading("major", department, (f"channel:{channel}",))
    reasons = []
    if amount_involved is not None and amount_involved >= policy.urgent_amount:
        reasons.append(f"amount>={policy.urgent_amount}")
    if tier in ("quality", "high_end"):
        reasons.append(f"tier:{tier}")
    if is_repeat:
        reasons.append("repeat")
    if category == "system_outage":
        reasons.append("system_outage")
    return Grading("urgent" if reasons else "normal", department, tuple(reasons))


@dataclass(frozen=True)
class PastComplaint:
    """What repeat detection needs to know of an earlier complaint."""

    customer_id: str
    category: str
    received_at: datetime


def is_repeat(
    customer_id: str,
    category: str,
    received_at: datetime,
    earlier: Iterable[PastComplaint],
    policy: ComplaintPolicy,
) -> bool:
    """Same customer and category received within the repeat window before this one."""
    window = timedelta(days=policy.repeat_window_days)
    return any(
        p.customer_id == customer_id
        and p.category == category
        and timedelta(0) <= received_at - p.received_at <= window
        for p in earlier
    )


# --- timers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleTimer:
    """Create a durable timer (kind, key) due at `due_at`."""

    kind: str
    key: str
    due_at: datetime
    payload: dict[str, str | int]


@dataclass(frozen=True)
class CancelTimer:
    """Remove a pending durable timer."""

    kind: str
    key: str


TimerInstruction = ScheduleTimer | CancelTimer


def sla_timer_key(complaint_id: str, clock: SlaClock, generation: int) -> str:
    """One key per complaint, clock and schedule generation: the timer of the clock's next
    level (named in its payload), moved on to the level after as each fires."""
    return f"{complaint_id}:{clock}:{generation}"


def callback_timer_key(complaint_id: str, cycle: int, sequence: int) -> str:
    return f"{complaint_id}:{cycle}:{sequence}"


# --- SLA clocks ---------------------------------------------------------------------------


@dataclass
class Clock:
    """One internal SLA clock (response or resolution) of a complaint.

    Thresholds are `started_at + ratio * window + paused_total`: a pause pushes every
    threshold back by its length. `generation` changes whenever the thresholds move, so old
    timers are told apart; `fired` holds the levels already emitted in this `cycle`.
    """

    name: SlaClock
    started_at: datetime
    window: timedelta
    cycle: int = 0
    generation: int = 0
    paused_since: datetime | None = None
    paused_total: timedelta = timedelta(0)
    met_at: datetime | None = None
    fired: list[Level] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.met_at is None and self.paused_since is None

    def threshold(self, level: Level, policy: ComplaintPolicy) -> datetime:
        """When `level` is reached (while running)."""
        return self.started_at + self.window * policy.ratio(level) + self.paused_total

    def due_at(self, now: datetime | None = None) -> datetime:
        """The deadline; while paused, the deadline if the clock resumed at `now`."""
        due = self.started_at + self.window + self.paused_total
        if self.paused_since is not None and now is not None:
            due += now - self.paused_since
        return due

    @property
    def next_level(self) -> Level | None:
        """The level to come: the one after the last that fired (none is sent late)."""
        after = max((LEVELS.index(level) for level in self.fired), default=-1) + 1
        return LEVELS[after] if after < len(LEVELS) else None

    def timers(self, complaint_id: str, policy: ComplaintPolicy) -> list[TimerInstruction]:
        """The timer of the next level, at the current generation. When it fires, the same
        timer is moved on to the level after: a running clock holds one timer, written
        once at filing and cancelled alone when the clock is met."""
        level = self.next_level
        if not self.running or level is None:
            return []
        return [
            ScheduleTimer(
                TIMER_SLA,
                sla_timer_key(complaint_id, self.name, self.generation),
                self.threshold(level, policy),
                {"complaint_id": complaint_id, "clock": self.name, "level": level},
            )
        ]

    def cancel_timers(self, complaint_id: str) -> list[TimerInstruction]:
        """Cancel this generation's pending timer (none once every level fired)."""
        if self.next_level is None:
            return []
        return [CancelTimer(TIMER_SLA, sla_timer_key(complaint_id, self.name, self.generation))]

    def meet(self, now: datetime, complaint_id: str) -> list[TimerInstruction]:
        """The clock's target was met: its timers are cancelled."""
        cancels = self.cancel_timers(complaint_id) if self.running else []
        if self.paused_since is not None:
            self.paused_total += now - self.paused_since
            self.paused_since = None
        self.met_at = now
        return cancels

    def pause(self, now: datetime, complaint_id: str) -> list[TimerInstruction]:
        if not self.running:
            return []
        cancels = self.cancel_timers(complaint_id)
        self.paused_since = now
        return cancels

    def resume(
        self, now: datetime, complaint_id: str, policy: ComplaintPolicy
    ) -> list[TimerInstruction]:
        """Unpause: thresholds move back by the pause; timers are re-created."""
        if self.paused_since is None or self.met_at is not None:
            return []
        self.paused_total += now - self.paused_since
        self.paused_since = None
        self.generation += 1
        return self.timers(complaint_id, policy)

    def rewindow(
        self, window: timedelta, complaint_id: str, policy: ComplaintPolicy
    ) -> list[TimerInstruction]:
        """A new window from the same start (severity change); unfired levels move."""
        if self.met_at is not None:
            self.window = window
            return []
        cancels = self.cancel_timers(complaint_id) if self.running else []
        self.window = window
        self.generation += 1
        return cancels + self.timers(complaint_id, policy)

    def restart(
        self, now: datetime, window: timedelta, complaint_id: str, policy: ComplaintPolicy
    ) -> list[TimerInstruction]:
        """A new cycle from `now` (reopen): every level can fire again."""
        cancels = self.cancel_timers(complaint_id) if self.running else []
        self.started_at = now
        self.window = window
        self.cycle += 1
        self.generation += 1
        self.paused_since = None
        self.paused_total = timedelta(0)
        self.met_at = None
        self.fired = []
        return cancels + self.timers(complaint_id, policy)


# --- the aggregate's parts ----------------------------------------------------------------


@dataclass(frozen=True)
class Handoff:
    """One step of the ticket's trail (工单穿透)."""

    from_department: str | None
    to_department: str
    from_handler: str | None
    to_handler: str | None
    at: datetime
    by: str
    reason: str


@dataclass(frozen=True)
class SeverityChange:
    """An audited change of grade."""

    from_severity: Severity
    to_severity: Severity
    at: datetime
    by: str
    reason: str


@dataclass(frozen=True)
class RegulatoryExtension:
    """An approved extension of the regulatory reply deadline."""

    from_due_at: datetime
    to_due_at: datetime
    approved_by: str
    requested_by: str
    at: datetime
    reason: str


@dataclass
class Callback:
    """A post-resolution callback (回访): day 3, 7 or 30 of a resolution cycle."""

    sequence: int
    cycle: int
    due_at: datetime
    due_emitted_at: datetime | None = None
    cancelled: bool = False
    reached: bool | None = None
    nps: int | None = None
    note: str | None = None
    recorded_at: datetime | None = None
    recorded_by: str | None = None


@dataclass(frozen=True)
class Compensation:
    """Compensation granted (救济): points for a service flaw, money for a confirmed loss."""

    kind: CompensationKind
    points: int | None
    amount: Decimal | None
    loss_amount: Decimal | None
    apology_visit: bool
    at: datetime
    by: str


@dataclass(frozen=True)
class Filing:
    """A complaint as received by a channel or the API (the FileComplaint command)."""

    complaint_ref: str
    customer_id: str
    channel: ComplaintChannel
    category: ComplaintCategory
    description: str
    amount_involved: Decimal | None
    received_by: str
    branch_id: str
    received_at: datetime
    owner_kind: StaffKind = "employee"  # "department": a desk received it (the app)

    def __post_init__(self) -> None:
        if not self.description.strip():
            raise InvalidCommand("description", "must not be empty")
        if self.amount_involved is not None and self.amount_involved < 0:
            raise InvalidCommand(
                "amount_involved", f"must not be negative (got {self.amount_involved})"
            )
        if self.received_at.tzinfo is None:
            raise InvalidCommand("received_at", "needs a timezone offset")
        if self.received_at < EARLIEST_RECEIPT:
            raise InvalidCommand("received_at", "must not be before 2000-01-01T00:00:00Z")

    def check_received_by(self, now: datetime) -> None:
        """A complaint cannot be received in the future (beyond a desk's clock skew)."""
        if self.received_at > now + CLOCK_SKEW:
            raise InvalidCommand("received_at", "must not be in the future")


@dataclass(frozen=True)
class SlaAlert:
    """A warning (level 0) or breach (level 1/2) to emit."""

    clock: SlaClock
    level: Level
    due_at: datetime
    escalation_level: int
    overdue_by: timedelta


# --- the aggregate ------------------------------------------------------------------------


@dataclass
class Complaint:
    """A complaint and everything that happened to it; commands enforce the state machine."""

    complaint_id: str
    complaint_ref: str
    customer_id: str
    channel: ComplaintChannel
    category: ComplaintCategory
    description: str
    amount_involved: Decimal | None
    branch_id: str
    received_at: datetime
    owner_id: str
    department: str
    handler_id: str | None
    severity: Severity
    grading_reasons: tuple[str, ...]
    is_repeat: bool
    status: ComplaintStatus
    response_clock: Clock
    resolution_clock: Clock
    regulatory_due_at: datetime
    regulatory_met_at: datetime | None = None
    regulatory_extensions: list[RegulatoryExtension] = field(default_factory=list)
    trail: list[Handoff] = field(default_factory=list)
    severity_changes: list[SeverityChange] = field(default_factory=list)
    callbacks: list[Callback] = field(default_factory=list)
    compensation: list[Compensation] = field(default_factory=list)
    escalation_level: int = 0
    flagged_for_review: bool = False
    apology_visit_scheduled: bool = False
    resolution: str | None = None
    root_cause: str | None = None
    resolved_at: datetime | None = None
    resolved_on_time: bool | None = None
    closed_at: datetime | None = None
    reopen_count: int = 0
    last_change: str = "filed"
    owner_kind: StaffKind = "employee"  # "department": the owner is a desk (app filings)

    # -- the state machine --

    def _enter(self, action: Action) -> None:
        allowed, target = TRANSITIONS[action]
        if self.status not in allowed:
            raise IllegalTransition(action.replace("_", " "), self.status)
        if target is not None:
            self.status = target

    def acknowledge(self, now: datetime, by: str) -> list[TimerInstruction]:
        """First response given: meets the response clock."""
        self._enter("acknowledge")
        self.last_change = "acknowledged"
        return self.response_clock.meet(now, self.complaint_id)

    def start(self, now: datetime, by: str) -> list[TimerInstruction]:
        """A handler starts working on it."""
        self._enter("start")
        if self.handler_id is None:
            self.handler_id = by
        self.last_change = "started"
        return []

    def transfer(
        self,
        now: datetime,
        by: str,
        department: str | None,
        handler_id: str | None,
        reason: str,
    ) -> list[TimerInstruction]:
        """Hand the ticket to another department and/or handler; the owner stays."""
        self._enter("transfer")
        if not reason.strip():
            raise InvalidCommand("reason", "a transfer needs a reason")
        to_department = department or self.department
        if to_department == self.department and handler_id == self.handler_id:
            raise InvalidCommand("department", "the complaint is already there")
        self.trail.append(
            Handoff(self.department, to_department, self.handler_id, handler_id, now, by, reason)
        )
        self.department, self.handler_id = to_department, handler_id
        self.last_change = "transferred"
        return []

    def await_customer(self, now: datetime, by: str) -> list[TimerInstruction]:
        """Waiting for the customer pauses the internal clocks (not the regulatory one)."""
        self._enter("await_customer")
        self.last_change = "awaiting_customer"
        return self.response_clock.pause(now, self.complaint_id) + self.resolution_clock.pause(
            now, self.complaint_id
        )

    def resume(self, now: datetime, by: str, policy: ComplaintPolicy) -> list[TimerInstruction]:
        """The customer answered: the clocks run again with the time they had left."""
        self._enter("resume")
        self.last_change = "resumed"
        return self.response_clock.resume(
            now, self.complaint_id, policy
        ) + self.resolution_clock.resume(now, self.complaint_id, policy)

    def resolve(
        self, now: datetime, by: str, resolution: str, root_cause: str, policy: ComplaintPolicy
    ) -> list[TimerInstruction]:
        """Resolved: clocks met, callbacks scheduled on day 3, 7 and 30."""
        if not resolution.strip():
            raise InvalidCommand("resolution", "must not be empty")
        if not root_cause.strip():
            raise InvalidCommand("root_cause", "must not be empty")
        self._enter("resolve")
        self.resolution, self.root_cause = resolution.strip(), root_cause.strip()
        self.resolved_at = now
        instructions = self.response_clock.meet(now, self.complaint_id)
        instructions += self.resolution_clock.meet(now, self.complaint_id)
        self.resolved_on_time = now <= self.resolution_clock.due_at()
        self.regulatory_met_at = now
        cycle = self.resolution_clock.cycle
        for sequence, days in enumerate(policy.callback_days, start=1):
            callback = Callback(sequence, cycle, now + timedelta(days=days))
            self.callbacks.append(callback)
            instructions.append(
                ScheduleTimer(
                    TIMER_CALLBACK,
                    callback_timer_key(self.complaint_id, cycle, sequence),
                    callback.due_at,
                    {"complaint_id": self.complaint_id, "cycle": cycle, "sequence": sequence},
                )
            )
        self.last_change = "resolved"
        return instructions

    def close(self, now: datetime, by: str) -> list[TimerInstruction]:
        self._enter("close")
        self.closed_at = now
        self.last_change = "closed"
        return []

    def reopen(
        self, now: datetime, by: str, reason: str, policy: ComplaintPolicy
    ) -> list[TimerInstruction]:
        """Reopened: a new resolution cycle from now with the same severity."""
        self._enter("reopen")
        instructions: list[TimerInstruction] = []
        for callback in self.callbacks:
            if callback.due_emitted_at is None and not callback.cancelled:
                callback.cancelled = True
                instructions.append(
                    CancelTimer(
                        TIMER_CALLBACK,
                        callback_timer_key(self.complaint_id, callback.cycle, callback.sequence),
                    )
                )
        instructions += self.resolution_clock.restart(
            now, policy.resolution_window(self.severity), self.complaint_id, policy
        )
        self.resolved_at = self.resolved_on_time = self.closed_at = None
        self.regulatory_met_at = None
        self.reopen_count += 1
        self.last_change = "reopened"
        return instructions

    def change_severity(
        self, now: datetime, by: str, severity: Severity, reason: str, policy: ComplaintPolicy
    ) -> list[TimerInstruction]:
        """Regrade (audited); deadlines are recomputed from receipt."""
        self._enter("change_severity")
        if not reason.strip():
            raise InvalidCommand("reason", "a severity change needs a reason")
        if severity == self.severity:
            raise InvalidCommand("severity", f"the complaint is already {severity}")
        self.severity_changes.append(SeverityChange(self.severity, severity, now, by, reason))
        self.severity = severity
        self.last_change = "severity_changed"
        return self.response_clock.rewindow(
            policy.response_window(severity), self.complaint_id, policy
        ) + self.resolution_clock.rewindow(
            policy.resolution_window(severity), self.complaint_id, policy
        )

    def extend_regulatory(
        self, now: datetime, by: str, approved_by: str, reason: str, policy: ComplaintPolicy
    ) -> list[TimerInstruction]:
        """Extend the regulatory reply deadline to the next step (30, then 60 days)."""
        self._enter("extend_regulatory")
        if not approved_by.strip():
            raise InvalidCommand("approved_by", "an extension needs the approver")
        used = len(self.regulatory_extensions)
        if used >= len(policy.regulatory_extension_days):
            raise ComplaintConflict(
                f"the regulatory deadline was already extended {used} times (the maximum)"
            )
        new_due = self.received_at + timedelta(days=policy.regulatory_extension_days[used])
        self.regulatory_extensions.append(
            RegulatoryExtension(self.regulatory_due_at, new_due, approved_by, by, now, reason)
        )
        self.regulatory_due_at = new_due
        self.last_change = "regulatory_extended"
        return []

    # -- things that happen in any status --

    def record_callback(
        self,
        now: datetime,
        by: str,
        sequence: int,
        reached: bool,
        nps: int | None,
        note: str | None,
        policy: ComplaintPolicy,
    ) -> None:
        """Record a callback's outcome; a detractor score flags the complaint for review."""
        if nps is not None and not 0 <= nps <= 10:
            raise InvalidCommand("nps", f"must be 0-10 (got {nps})")
        if nps is not None and not reached:
            raise InvalidCommand("nps", "a score needs the customer to have been reached")
        callback = self.current_callback(sequence)
        if callback is None:
            raise ComplaintConflict(
                f"no callback {sequence} is scheduled (the complaint is {self.status})"
            )
        if callback.recorded_at is not None:
            raise ComplaintConflict(f"callback {sequence} was already recorded")
        callback.reached, callback.nps, callback.note = reached, nps, note
        callback.recorded_at, callback.recorded_by = now, by
        self.last_change = "callback_recorded"
        if nps is not None and nps <= policy.detractor_max_nps:
            self.flagged_for_review = True
            self.last_change = "callback_recorded_flagged_for_review"

    def current_callback(self, sequence: int) -> Callback | None:
        """The callback `sequence` of the latest resolution, unless cancelled by a reopen."""
        for callback in reversed(self.callbacks):
            if callback.sequence == sequence and not callback.cancelled:
                return callback
        return None

    def grant_compensation(
        self,
        now: datetime,
        by: str,
        kind: CompensationKind,
        loss_amount: Decimal | None,
        policy: ComplaintPolicy,
    ) -> Compensation:
        """Compute, record and return the compensation the rules give: once per kind (a
        second fund-loss grant paid 240 % of the loss; several losses are one grant)."""
        points, amount = compensation_for(kind, self.severity, loss_amount, policy)
        for earlier in self.compensation:
            if earlier.kind == kind:
                raise ComplaintConflict(
                    f"{kind} compensation was granted already, at {earlier.at.isoformat()} "
                    f"by {earlier.by}"
                )
        visit = self.severity == "major" and not self.apology_visit_scheduled
        self.apology_visit_scheduled = self.apology_visit_scheduled or visit
        granted = Compensation(kind, points, amount, loss_amount, visit, now, by)
        self.compensation.append(granted)
        self.last_change = "compensation_granted"
        return granted

    # -- timers firing --

    def sla_due(
        self, now: datetime, clock_name: SlaClock, level: Level, generation: int
    ) -> SlaAlert | None:
        """A SLA timer fired: the alert to emit, or None if it is stale or already emitted.
        After an alert, `sla_timers` gives the timer of the clock's next level."""
        clock = self._clock(clock_name)
        if generation != clock.generation or level in clock.fired or not clock.running:
            return None
        clock.fired.append(level)
        due = clock.due_at()
        escalation = {"warning": 0, "breach_1": 1, "breach_2": 2}[level]
        if escalation:
            self.escalation_level = max(self.escalation_level, escalation)
            self.last_change = f"escalated_level_{escalation}"
        return SlaAlert(clock_name, level, due, escalation, max(now - due, timedelta(0)))

    def sla_timers(self, clock_name: SlaClock, policy: ComplaintPolicy) -> list[TimerInstruction]:
        """The timer of the clock's next level, if it is running and has one."""
        return self._clock(clock_name).timers(self.complaint_id, policy)

    def _clock(self, name: SlaClock) -> Clock:
        return self.response_clock if name == "response" else self.resolution_clock

    def callback_due(self, now: datetime, cycle: int, sequence: int) -> Callback | None:
        """A callback timer fired: the callback now due, or None if cancelled/already sent."""
        for callback in self.callbacks:
            if callback.cycle == cycle and callback.sequence == sequence:
                if callback.cancelled or callback.due_emitted_at is not None:
                    return None
                callback.due_emitted_at = now
                return callback
        return None

    # -- views --

    @property
    def response_due_at(self) -> datetime:
        return self.response_clock.due_at()

    def resolution_due_at(self, now: datetime | None = None) -> datetime:
        return self.resolution_clock.due_at(now)

    def is_overdue(self, now: datetime) -> bool:
        """Past an internal deadline that is running, or past the regulatory one."""
        if self.status not in OPEN:
            return False
        late = [c.due_at() < now for c in (self.response_clock, self.resolution_clock) if c.running]
        return any(late) or self.regulatory_due_at < now


def file_complaint(
    complaint_id: str, filing: Filing, grading: Grading, repeat: bool, policy: ComplaintPolicy
) -> tuple[Complaint, list[TimerInstruction]]:
    """A new complaint: graded, routed, owned by whoever received it, clocks running."""
    received = filing.received_at
    complaint = Complaint(
        complaint_id=complaint_id,
        complaint_ref=filing.complaint_ref,
        customer_id=filing.customer_id,
        channel=filing.channel,
        category=filing.category,
        description=filing.description,
        amount_involved=filing.amount_involved,
        branch_id=filing.branch_id,
        received_at=received,
        owner_id=filing.received_by,
        owner_kind=filing.owner_kind,
        department=grading.department,
        handler_id=None,
        severity=grading.severity,
        grading_reasons=grading.reasons,
        is_repeat=repeat,
        status="received",
        response_clock=Clock("response", received, policy.response_window(grading.severity)),
        resolution_clock=Clock("resolution", received, policy.resolution_window(grading.severity)),
        regulatory_due_at=received + timedelta(days=policy.regulatory_days),
        trail=[
            Handoff(
                None,
                grading.department,
                None,
                None,
                received,
                filing.received_by,
                "routed on receipt: " + (", ".join(grading.reasons) or "default routing"),
            )
        ],
    )
    instructions = complaint.response_clock.timers(complaint_id, policy)
    instructions += complaint.resolution_clock.timers(complaint_id, policy)
    return complaint, instructions


def compensation_for(
    kind: CompensationKind,
    severity: Severity,
    loss_amount: Decimal | None,
    policy: ComplaintPolicy,
) -> tuple[int | None, Decimal | None]:
    """(points, amount): points by severity for a service flaw; 120% of a confirmed loss."""
    if kind == "service_flaw":
        if loss_amount is not None:
            raise InvalidCommand("loss_amount", "a service flaw is compensated in points only")
        return policy.service_flaw_points[severity], None
    if loss_amount is None or loss_amount <= 0:
        raise InvalidCommand("loss_amount", "a fund loss needs a positive confirmed loss amount")
    amount = (loss_amount * policy.fund_loss_rate).quantize(CENT, ROUND_HALF_UP)
    if amount >= MONEY_LIMIT:
        raise InvalidCommand("loss_amount", f"its compensation {amount} is out of range")
    return None, amount


# --- reports ------------------------------------------------------------------------------


def percent(part: int, whole: int) -> Decimal | None:
    """part/whole as a percentage with 2 places; None when there is nothing to measure."""
    if whole == 0:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(CENT, ROUND_HALF_UP)


def kpis(counts: Mapping[str, int], average_handling_seconds: Decimal | None) -> dict[str, object]:
    """The complaint KPIs of one group from its counts (DOMAIN.md §2, Reports)."""

    def n(name: str) -> int:
        return int(counts.get(name) or 0)

    handling = (
        None
        if average_handling_seconds is None
        else (Decimal(average_handling_seconds) / 3600).quantize(CENT, ROUND_HALF_UP)
    )
    return {
        "complaints": n("complaints"),
        "resolved": n("resolved"),
        # Compliance counts only settled cases: resolved ones and open ones already late.
        "sla_compliance_pct": percent(n("on_time"), n("resolved") + n("open_overdue")),
        "average_handling_hours": handling,
        "repeat_rate_pct": percent(n("repeats"), n("complaints")),
        "nps": percent(n("promoters") - n("detractors"), n("nps_responses")),
        "nps_responses": n("nps_responses"),
    }
