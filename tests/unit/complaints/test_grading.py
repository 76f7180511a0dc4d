"""Grading, routing, repeat detection and compensation rules (DOMAIN.md §2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.complaints.domain import (
    DEFAULT_ROUTING,
    ComplaintPolicy,
    Filing,
    InvalidCommand,
    PastComplaint,
    compensation_for,
    grade,
    is_repeat,
    kpis,
)

pytestmark = pytest.mark.unit
POLICY = ComplaintPolicy()
T0 = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)


@pytest.mark.parametrize("category", ["card_fraud", "unauthorized_transaction", "account_security"])
@pytest.mark.parametrize("channel", ["app", "regulator"])
def test_fund_security_is_major_at_head_office_risk(category, channel):
    g = grade(category, channel, None, "ordinary", False, POLICY)
    assert (g.severity, g.department, g.reasons) == (
        "major",
        "head_office_risk",
        ("fund_security",),
    )


@pytest.mark.parametrize("channel", ["regulator", "media"])
def test_regulator_or_media_is_major_in_the_default_department(channel):
    g = grade("fees", channel, None, None, False, POLICY)
    assert (g.severity, g.department) == ("major", "retail_banking")


@pytest.mark.parametrize(
    ("amount", "severity"),
    [(None, "normal"), (Decimal("9999.99"), "normal"), (Decimal("10000"), "urgent")],
)
def test_amount_of_10000_or_more_is_urgent(amount, severity):
    assert grade("fees", "app", amount, None, False, POLICY).severity == severity


@pytest.mark.parametrize(
    ("tier", "severity"),
    [
        (None, "normal"),
        ("ordinary", "normal"),
        ("potential", "normal"),
        ("quality", "urgent"),
        ("high_end", "urgent"),
    ],
)
def test_quality_and_high_end_customers_are_urgent(tier, severity):
    assert grade("fees", "branch", None, tier, False, POLICY).severity == severity


def test_repeat_is_urgent():
    g = grade("other", "web", None, None, True, POLICY)
    assert (g.severity, g.reasons) == ("urgent", ("repeat",))


def test_system_outage_is_urgent_at_it_operations():
    g = grade("system_outage", "app", None, None, False, POLICY)
    assert (g.severity, g.department) == ("urgent", "it_operations")


def test_several_urgency_reasons_are_all_recorded():
    g = grade("system_outage", "app", Decimal("20000"), "high_end", True, POLICY)
    assert g.severity == "urgent"
    assert g.reasons == ("amount>=10000", "tier:high_end", "repeat", "system_outage")


@pytest.mark.parametrize(("category", "department"), sorted(DEFAULT_ROUTING.items()))
def test_default_routing(category, department):
    g = grade(category, "hotline", None, None, False, POLICY)
    assert (g.severity, g.department) == (
        "urgent" if category == "system_outage" else "normal",
        department,
    )


def test_thresholds_are_configurable():
    policy = ComplaintPolicy(urgent_amount=Decimal("500"), routing={"fees": "cards"})
    g = grade("fees", "app", Decimal("500"), None, False, policy)
    assert (g.severity, g.department) == ("urgent", "cards")


def test_repeat_means_same_customer_and_category_within_90_days():
    earlier = [
        PastComplaint("C1", "fees", T0 - timedelta(days=90)),
        PastComplaint("C2", "other", T0 - timedelta(days=1)),
        PastComplaint("C1", "other", T0 - timedelta(days=91)),
    ]
    assert is_repeat("C1", "fees", T0, earlier, POLICY)
    assert not is_repeat("C1", "other", T0, earlier, POLICY)  # 91 days ago
    assert not is_repeat("C2", "fees", T0, earlier, POLICY)  # other category
    assert not is_repeat("C3", "fees", T0, earlier, POLICY)
    later = [PastComplaint("C1", "fees", T0 + timedelta(hours=1))]
    assert not is_repeat("C1", "fees", T0, later, POLICY)


@pytest.mark.parametrize(
    ("severity", "points"), [("normal", 500), ("urgent", 1000), ("major", 2000)]
)
def test_service_flaw_points_by_severity(severity, points):
    assert compensation_for("service_flaw", severity, None, POLICY) == (points, None)


@pytest.mark.parametrize(
    ("loss", "amount"),
    [
        ("100", "120.00"),
        ("0.01", "0.01"),  # 0.012 rounds down
        ("0.05", "0.06"),  # 0.060
        ("1234.57", "1481.48"),  # 1481.484
        ("10.04", "12.05"),  # 12.048
        ("0.0125", "0.02"),  # 0.015 rounds half up
    ],
)
def test_fund_loss_is_120_percent_rounded_to_cents(loss, amount):
    points, paid = compensation_for("fund_loss", "urgent", Decimal(loss), POLICY)
    assert points is None
    assert paid == Decimal(amount)
    assert paid.as_tuple().exponent == -2


@pytest.mark.parametrize("loss", [None, Decimal("0"), Decimal("-1")])
def test_fund_loss_needs_a_positive_loss(loss):
    with pytest.raises(InvalidCommand) as exc:
        compensation_for("fund_loss", "normal", loss, POLICY)
    assert exc.value.field == "loss_amount"


def test_service_flaw_takes_no_loss_amount():
    with pytest.raises(InvalidCommand):
        compensation_for("service_flaw", "normal", Decimal("5"), POLICY)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"description": "  "}, "description"),
        ({"amount_involved": Decimal("-0.01")}, "amount_involved"),
        ({"received_at": datetime(2026, 1, 1)}, "received_at"),  # noqa: DTZ001 (naive on purpose)
    ],
)
def test_filing_input_rules_name_the_field(change, field):
    values = {
        "complaint_ref": "R1",
        "customer_id": "C1",
        "channel": "app",
        "category": "fees",
        "description": "fee",
        "amount_involved": None,
        "received_by": "E1",
        "branch_id": "B1",
        "received_at": T0,
    }
    with pytest.raises(InvalidCommand) as exc:
        Filing(**(values | change))
    assert exc.value.field == field


def test_invalid_policy_is_refused():
    with pytest.raises(ValueError):
        ComplaintPolicy(warning_ratio=1.2)
    with pytest.raises(ValueError):
        ComplaintPolicy(response_hours={"normal": 24, "urgent": 4})


def test_kpis():
    result = kpis(
        {
            "complaints": 8,
            "resolved": 4,
            "on_time": 3,
            "open_overdue": 2,
            "repeats": 1,
            "nps_responses": 4,
            "promoters": 2,
            "detractors": 1,
        },
        Decimal("5400"),
    )
    assert result == {
        "complaints": 8,
        "resolved": 4,
        "sla_compliance_pct": Decimal("50.00"),
        "average_handling_hours": Decimal("1.50"),
        "repeat_rate_pct": Decimal("12.50"),
        "nps": Decimal("25.00"),
        "nps_responses": 4,
    }
    assert kpis({}, None)["sla_compliance_pct"] is None
