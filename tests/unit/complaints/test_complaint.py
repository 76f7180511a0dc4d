"""The complaint aggregate: state machine, SLA clock arithmetic, callbacks, compensation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.complaints.domain import (
    TIMER_CALLBACK,
    TIMER_SLA,
    TRANSITIONS,
    CancelTimer,
    Complaint,
    ComplaintConflict,
    ComplaintPolicy,
    Filing,
    IllegalTransition,
    InvalidCommand,
    ScheduleTimer,
    file_complaint,
    grade,
)

pytestmark = pytest.mark.unit
POLICY = ComplaintPolicy()
T0 = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)
H = timedelta(hours=1)
STATUSES = ("received", "acknowledged", "in_progress", "awaiting_customer", "resolved", "closed")


def new(category: str = "fees", channel: str = "app", **kw) -> tuple[Complaint, list]:
    filing = Filing(
        complaint_ref="R1",
        customer_id="C1",
        channel=channel,  # type: ignore[arg-type]
        category=category,  # type: ignore[arg-type]
        description="something went wrong",
        amount_involved=kw.get("amount"),
        received_by="E1",
        branch_id="B1",
        received_at=T0,
    )
    grading = grade(filing.category, filing.channel, filing.amount_involved, None, False, POLICY)
    return file_complaint("K1", filing, grading, False, POLICY)


def in_status(status: str) -> Complaint:
    """A complaint driven through legal commands to `status`."""
    c, _ = new()
    path = {
        "received": [],
        "acknowledged": ["ack"],
        "in_progress": ["ack", "start"],
        "awaiting_customer": ["ack", "start", "await"],
        "resolved": ["ack", "start", "resolve"],
        "closed": ["ack", "start", "resolve", "close"],
    }[status]
    for step in path:
        {
            "ack": lambda: c.acknowledge(T0 + H, "E1"),
            "start": lambda: c.start(T0 + H, "E2"),
            "await": lambda: c.await_customer(T0 + 2 * H, "E2"),
            "resolve": lambda: c.resolve(T0 + 3 * H, "E2", "refunded", "double charge", POLICY),
            "close": lambda: c.close(T0 + 4 * H, "E2"),
        }[step]()
    assert c.status == status
    return c


def schedules(instructions) -> dict[str, datetime]:
    """Due times by key, and for SLA timers the level they are at: "K1:response:0/warning"."""
    return {
        "/".join(filter(None, (i.key, i.payload.get("level")))): i.due_at
        for i in instructions
        if isinstance(i, ScheduleTimer)
    }


def cancels(instructions) -> set[str]:
    return {i.key for i in instructions if isinstance(i, CancelTimer)}


COMMANDS = {
    "acknowledge": lambda c: c.acknowledge(T0 + 5 * H, "E9"),
    "start": lambda c: c.start(T0 + 5 * H, "E9"),
    "await_customer": lambda c: c.await_customer(T0 + 5 * H, "E9"),
    "resume": lambda c: c.resume(T0 + 5 * H, "E9", POLICY),
    "resolve": lambda c: c.resolve(T0 + 5 * H, "E9", "fixed", "bug", POLICY),
    "close": lambda c: c.close(T0 + 5 * H, "E9"),
    "reopen": lambda c: c.reopen(T0 + 5 * H, "E9", "not fixed", POLICY),
    "transfer": lambda c: c.transfer(T0 + 5 * H, "E9", "operations", "E7", "needs ops"),
    "change_severity": lambda c: c.change_severity(T0 + 5 * H, "E9", "major", "press", POLICY),
    "extend_regulatory": lambda c: c.extend_regulatory(T0 + 5 * H, "E9", "M1", "complex", POLICY),
}
EXPECTED = {
    ("received", "acknowledge"): "acknowledged",
    ("acknowledged", "start"): "in_progress",
    ("acknowledged", "await_customer"): "awaiting_customer",
    ("in_progress", "await_customer"): "awaiting_customer",
    ("acknowledged", "resolve"): "resolved",
    ("awaiting_customer", "resume"): "in_progress",
    ("in_progress", "resolve"): "resolved",
    ("awaiting_customer", "resolve"): "resolved",
    ("resolved", "close"): "closed",
    ("resolved", "reopen"): "in_progress",
    ("closed", "reopen"): "in_progress",
    **{
        (s, a): s
        for s in STATUSES[:4]
        for a in ("transfer", "change_severity", "extend_regulatory")
    },
}


def test_the_table_covers_every_command():
    assert set(COMMANDS) == set(TRANSITIONS)


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_legal_and_illegal_transition(status, command):
    c = in_status(status)
    expected = EXPECTED.get((status, command))
    if expected is None:
        with pytest.raises(IllegalTransition) as exc:
            COMMANDS[command](c)
        assert exc.value.status == status
        assert c.status == status
    else:
        COMMANDS[command](c)
        assert c.status == expected


def test_filing_schedules_each_clocks_first_level():
    c, timers = new("card_fraud")
    assert (c.severity, c.department, c.owner_id, c.status) == (
        "major",
        "head_office_risk",
        "E1",
        "received",
    )
    assert schedules(timers) == {
        "K1:response:0/warning": T0 + timedelta(minutes=48),
        "K1:resolution:0/warning": T0 + timedelta(hours=4, minutes=48),
    }
    assert all(t.kind == TIMER_SLA for t in timers)
    assert c.regulatory_due_at == T0 + timedelta(days=15)


@pytest.mark.parametrize(
    ("severity_input", "response", "resolution"),
    [({}, 24, 72), ({"amount": Decimal("10000")}, 4, 24), ({"channel": "media"}, 1, 6)],
)
def test_deadlines_by_severity(severity_input, response, resolution):
    c, _ = new(**severity_input)
    assert c.response_due_at == T0 + response * H
    assert c.resolution_due_at() == T0 + resolution * H


def test_acknowledge_meets_the_response_clock():
    c, _ = new()
    instructions = c.acknowledge(T0 + H, "E1")
    assert cancels(instructions) == {"K1:response:0"}
    assert c.response_clock.met_at == T0 + H


def test_pause_pushes_the_deadline_back_by_its_length():
    c = in_status("in_progress")  # normal: resolution due T0+72h
    paused = c.await_customer(T0 + 10 * H, "E2")
    assert cancels(paused) == {"K1:resolution:0"}
    assert c.resolution_due_at(T0 + 15 * H) == T0 + 77 * H  # as if it resumed now
    resumed = c.resume(T0 + 15 * H, "E2", POLICY)
    assert c.resolution_due_at() == T0 + 77 * H
    assert schedules(resumed) == {"K1:resolution:1/warning": T0 + 72 * 0.8 * H + 5 * H}
    c.await_customer(T0 + 20 * H, "E2")
    c.resume(T0 + 22 * H, "E2", POLICY)
    assert c.resolution_due_at() == T0 + 79 * H


def test_a_pause_does_not_move_the_regulatory_clock():
    c = in_status("in_progress")
    c.await_customer(T0 + H, "E2")
    c.resume(T0 + 100 * H, "E2", POLICY)
    assert c.regulatory_due_at == T0 + timedelta(days=15)


def test_severity_change_recomputes_from_receipt_keeping_fired_levels():
    c, _ = new()  # normal, 24h / 72h
    assert c.sla_due(T0 + 19.2 * H, "response", "warning", 0) is not None
    changed = c.change_severity(T0 + 20 * H, "E2", "urgent", "VIP complained", POLICY)
    assert c.response_due_at == T0 + 4 * H
    assert c.resolution_due_at() == T0 + 24 * H
    assert schedules(changed) == {
        # the response warning already fired: its next level, the first breach, moves
        "K1:response:1/breach_1": T0 + 4 * H,
        "K1:resolution:1/warning": T0 + 24 * 0.8 * H,
    }
    assert "K1:response:0" in cancels(changed)
    assert c.severity_changes[0].from_severity == "normal"
    # a timer of the old generation is stale
    assert c.sla_due(T0 + 72 * H, "resolution", "breach_1", 0) is None


def test_severity_change_after_a_pause_keeps_the_paused_time():
    c = in_status("in_progress")
    c.await_customer(T0 + 2 * H, "E2")
    c.resume(T0 + 12 * H, "E2", POLICY)  # 10h paused
    c.change_severity(T0 + 13 * H, "E2", "urgent", "amount confirmed", POLICY)
    assert c.resolution_due_at() == T0 + 34 * H


def test_severity_change_needs_a_reason_and_a_different_severity():
    c, _ = new()
    with pytest.raises(InvalidCommand):
        c.change_severity(T0, "E2", "urgent", " ", POLICY)
    with pytest.raises(InvalidCommand):
        c.change_severity(T0, "E2", "normal", "same", POLICY)


def test_each_level_fires_once_with_escalation_and_overdue():
    c, _ = new("card_fraud")
    warning = c.sla_due(T0 + 4.8 * H, "resolution", "warning", 0)
    assert warning is not None and warning.escalation_level == 0
    assert c.sla_due(T0 + 4.9 * H, "resolution", "warning", 0) is None
    breach = c.sla_due(T0 + 6 * H + timedelta(seconds=3), "resolution", "breach_1", 0)
    assert breach is not None
    assert (breach.escalation_level, breach.overdue_by, breach.due_at) == (
        1,
        timedelta(seconds=3),
        T0 + 6 * H,
    )
    assert c.escalation_level == 1
    second = c.sla_due(T0 + 9 * H, "resolution", "breach_2", 0)
    assert second is not None and second.escalation_level == 2
    assert c.escalation_level == 2


def test_each_level_that_fires_schedules_the_next_and_the_last_none():
    c, _ = new("card_fraud")  # resolution: 6h, second escalation at 150%
    assert c.sla_due(T0 + 4.8 * H, "resolution", "warning", 0) is not None
    assert schedules(c.sla_timers("resolution", POLICY)) == {"K1:resolution:0/breach_1": T0 + 6 * H}
    assert c.sla_due(T0 + 6 * H, "resolution", "breach_1", 0) is not None
    assert schedules(c.sla_timers("resolution", POLICY)) == {"K1:resolution:0/breach_2": T0 + 9 * H}
    assert c.sla_due(T0 + 9 * H, "resolution", "breach_2", 0) is not None
    assert c.sla_timers("resolution", POLICY) == []
    # the other clock's chain is its own
    assert schedules(c.sla_timers("response", POLICY)) == {
        "K1:response:0/warning": T0 + timedelta(minutes=48)
    }


def test_a_level_passed_over_is_not_scheduled_late():
    """A breach that fired while the warning never did: the next level is the second
    breach, never the warning."""
    c, _ = new("card_fraud")
    assert c.sla_due(T0 + 6 * H, "resolution", "breach_1", 0) is not None
    assert schedules(c.sla_timers("resolution", POLICY)) == {"K1:resolution:0/breach_2": T0 + 9 * H}


def test_a_met_clock_schedules_no_next_level():
    c, _ = new()
    assert c.sla_due(T0 + 19.2 * H, "response", "warning", 0) is not None
    c.acknowledge(T0 + 20 * H, "E1")
    assert c.sla_timers("response", POLICY) == []


def test_a_clock_past_its_last_level_has_no_timer_to_cancel():
    c, _ = new()
    for level, at in (("warning", 19.2), ("breach_1", 24), ("breach_2", 36)):
        assert c.sla_due(T0 + at * H, "response", level, 0) is not None
    assert cancels(c.acknowledge(T0 + 40 * H, "E1")) == set()


def test_met_or_paused_clocks_do_not_fire():
    c, _ = new()
    c.acknowledge(T0 + H, "E1")
    assert c.sla_due(T0 + 24 * H, "response", "breach_1", 0) is None
    c.start(T0 + H, "E1")
    c.await_customer(T0 + 2 * H, "E1")
    assert c.sla_due(T0 + 72 * H, "resolution", "breach_1", 0) is None


def test_resolve_needs_resolution_and_root_cause():
    c = in_status("in_progress")
    with pytest.raises(InvalidCommand) as exc:
        c.resolve(T0 + H, "E2", "", "cause", POLICY)
    assert exc.value.field == "resolution"
    with pytest.raises(InvalidCommand) as exc:
        c.resolve(T0 + H, "E2", "fixed", " ", POLICY)
    assert exc.value.field == "root_cause"
    assert c.status == "in_progress"


def test_resolve_meets_the_clock_and_schedules_callbacks_on_day_3_7_30():
    c = in_status("in_progress")
    instructions = c.resolve(T0 + 10 * H, "E2", "refunded", "double charge", POLICY)
    resolved = T0 + 10 * H
    assert {k: v for k, v in schedules(instructions).items()} == {
        "K1:0:1": resolved + timedelta(days=3),
        "K1:0:2": resolved + timedelta(days=7),
        "K1:0:3": resolved + timedelta(days=30),
    }
    assert all(i.kind == TIMER_CALLBACK for i in instructions if isinstance(i, ScheduleTimer))
    assert cancels(instructions) == {"K1:resolution:0"}
    assert c.resolved_on_time is True
    due = c.callback_due(resolved + timedelta(days=3), 0, 1)
    assert due is not None and due.sequence == 1
    assert c.callback_due(resolved + timedelta(days=3), 0, 1) is None  # once


def test_resolving_late_is_not_on_time():
    c = in_status("in_progress")
    c.resolve(T0 + 73 * H, "E2", "fixed", "slow", POLICY)
    assert c.resolved_on_time is False


def test_resolving_while_paused_counts_the_pause():
    c = in_status("in_progress")
    c.await_customer(T0 + 2 * H, "E2")
    c.resolve(T0 + 74 * H, "E2", "fixed", "customer slow", POLICY)
    assert c.resolved_on_time is True  # 72h paused: due moved to T0+144h


def test_reopen_restarts_the_resolution_clock_with_the_same_severity():
    c = in_status("resolved")
    instructions = c.reopen(T0 + 100 * H, "E3", "not fixed", POLICY)
    assert c.resolution_due_at() == T0 + 172 * H
    assert schedules(instructions) == {"K1:resolution:1/warning": T0 + (100 + 72 * 0.8) * H}
    assert cancels(instructions) == {"K1:0:1", "K1:0:2", "K1:0:3"}
    assert c.current_callback(1) is None
    assert c.callback_due(T0 + 200 * H, 0, 1) is None  # cancelled
    assert (c.severity, c.reopen_count, c.resolved_at) == ("normal", 1, None)
    # a new cycle: every level can fire again
    assert c.sla_due(T0 + 172 * H, "resolution", "breach_1", 1) is not None
    c.resolve(T0 + 180 * H, "E3", "really fixed", "config", POLICY)
    assert c.current_callback(1) is not None and c.current_callback(1).cycle == 1


def test_transfer_appends_to_the_trail_and_keeps_the_owner():
    c, _ = new()
    c.transfer(T0 + H, "E1", "operations", None, "it is a processing issue")
    c.transfer(T0 + 2 * H, "E5", None, "E6", "Wang takes it")
    assert (c.owner_id, c.department, c.handler_id) == ("E1", "operations", "E6")
    assert [(t.from_department, t.to_department, t.to_handler, t.by) for t in c.trail] == [
        (None, "retail_banking", None, "E1"),
        ("retail_banking", "operations", None, "E1"),
        ("operations", "operations", "E6", "E5"),
    ]
    with pytest.raises(InvalidCommand):
        c.transfer(T0 + 3 * H, "E5", "operations", "E6", "again")
    with pytest.raises(InvalidCommand):
        c.transfer(T0 + 3 * H, "E5", "fees_desk", None, " ")


def test_regulatory_extensions_to_30_then_60_days_then_refused():
    c, _ = new()
    c.extend_regulatory(T0 + H, "E2", "M1", "needs investigation", POLICY)
    assert c.regulatory_due_at == T0 + timedelta(days=30)
    c.extend_regulatory(T0 + 2 * H, "E2", "M2", "third party", POLICY)
    assert c.regulatory_due_at == T0 + timedelta(days=60)
    assert [e.approved_by for e in c.regulatory_extensions] == ["M1", "M2"]
    with pytest.raises(ComplaintConflict):
        c.extend_regulatory(T0 + 3 * H, "E2", "M3", "more", POLICY)
    with pytest.raises(InvalidCommand):
        new()[0].extend_regulatory(T0, "E2", " ", "no approver", POLICY)


def test_callbacks_record_nps_and_detractors_flag_for_review():
    c = in_status("resolved")
    c.record_callback(T0 + 80 * H, "E2", 1, True, 9, "happy", POLICY)
    assert not c.flagged_for_review
    c.record_callback(T0 + 200 * H, "E2", 2, True, 6, "meh", POLICY)
    assert c.flagged_for_review
    with pytest.raises(ComplaintConflict):
        c.record_callback(T0 + 200 * H, "E2", 2, True, 9, "again", POLICY)
    with pytest.raises(InvalidCommand):
        c.record_callback(T0 + 200 * H, "E2", 3, True, 11, None, POLICY)
    with pytest.raises(InvalidCommand):
        c.record_callback(T0 + 200 * H, "E2", 3, False, 8, None, POLICY)
    c.record_callback(T0 + 800 * H, "E2", 3, False, None, "no answer", POLICY)
    assert c.current_callback(3).reached is False


def test_callbacks_need_a_resolution():
    c = in_status("in_progress")
    with pytest.raises(ComplaintConflict):
        c.record_callback(T0, "E2", 1, True, 10, None, POLICY)


def test_major_compensation_schedules_one_apology_visit():
    c, _ = new("card_fraud")
    first = c.grant_compensation(T0 + H, "E2", "fund_loss", Decimal("999.99"), POLICY)
    assert (first.amount, first.points, first.apology_visit) == (Decimal("1199.99"), None, True)
    second = c.grant_compensation(T0 + H, "E2", "service_flaw", None, POLICY)
    assert (second.points, second.apology_visit) == (2000, False)
    assert c.apology_visit_scheduled


def test_compensation_is_granted_once_per_kind():
    c, _ = new("card_fraud")
    c.grant_compensation(T0 + H, "E2", "fund_loss", Decimal("1000.00"), POLICY)
    with pytest.raises(ComplaintConflict, match="fund_loss compensation was granted already"):
        c.grant_compensation(T0 + 2 * H, "E3", "fund_loss", Decimal("1000.00"), POLICY)
    assert [g.amount for g in c.compensation] == [Decimal("1200.00")]  # not 240 %


def test_normal_compensation_has_no_visit():
    c, _ = new()
    granted = c.grant_compensation(T0 + H, "E2", "service_flaw", None, POLICY)
    assert (granted.points, granted.apology_visit, c.apology_visit_scheduled) == (500, False, False)


def test_overdue():
    c, _ = new()  # normal: response due T0+24h
    assert not c.is_overdue(T0 + 23 * H)
    assert c.is_overdue(T0 + 25 * H)
    c.acknowledge(T0 + 25 * H, "E1")
    assert not c.is_overdue(T0 + 26 * H)
    assert c.is_overdue(T0 + 73 * H)
