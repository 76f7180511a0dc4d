"""Complaints settings: the shared ones plus port and every threshold of DOMAIN.md §2."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field

from services.complaints.domain import DEFAULT_ROUTING, ComplaintPolicy
from shared.contracts.events import Severity
from shared.settings import StewardSettings


class ComplaintsSettings(StewardSettings):
    port: int = Field(default=8002, validation_alias="COMPLAINTS_PORT")
    consumer_pace_ms: float = Field(default=200, ge=0)  # off the customer-facing path
    # SLA deadlines fall due in crowds (a branch's morning, an outage's end): a second
    # worker fires one batch while another's SQL runs (notifications does the same).
    timer_concurrency: int = Field(default=2, ge=1)
    complaints_filing_linger_ms: float = Field(
        default=2.0,
        ge=0,
        description="Under load (after a batch of 5 or more), how long POST /complaints "
        "waits for more requests to file in the same transaction. 32 clients, 20 s of POST, "
        "alternating pairs: one process 926 and 1,147 req/s at 2 ms against 810 and 916 at "
        "0; two processes 1,270 and 1,562 against 1,086 and 1,294, with about 20 % less "
        "service CPU per request. Single runs of a first version that waited before every "
        "batch: 1,052 / 1,202 / 975 req/s at 1 / 2 / 5 ms in one process, 1,614 / 1,510 / "
        "1,493 in two",
    )
    complaints_filing_limit_per_hour: int = Field(
        default=10,
        ge=1,
        description="Complaints one customer may file through the API per hour (429 beyond)",
    )
    complaints_response_hours: dict[Severity, float] = Field(
        default={"normal": 24, "urgent": 4, "major": 1},
        description="First-response target by severity (hours)",
    )
    complaints_resolution_hours: dict[Severity, float] = Field(
        default={"normal": 72, "urgent": 24, "major": 6},
        description="Resolution deadline by severity (hours from receipt)",
    )
    complaints_warning_ratio: float = Field(default=0.8, description="Warning at this share")
    complaints_second_escalation_ratio: float = Field(
        default=1.5, description="Level-2 breach (branch president) at this share"
    )
    complaints_urgent_amount: Decimal = Field(default=Decimal("10000"))
    complaints_repeat_window_days: int = Field(default=90, ge=1)
    complaints_regulatory_days: int = Field(default=15, ge=1)
    complaints_regulatory_extension_days: tuple[int, ...] = (30, 60)
    complaints_callback_days: tuple[int, int, int] = (3, 7, 30)
    complaints_service_flaw_points: dict[Severity, Annotated[int, Field(ge=500, le=2000)]] = Field(
        default={"normal": 500, "urgent": 1000, "major": 2000},
        description="Points for a service flaw, by severity: 500 to 2,000 (DOMAIN.md)",
    )
    complaints_fund_loss_rate: Decimal = Field(default=Decimal("1.20"))
    complaints_detractor_max_nps: int = Field(default=6, ge=0, le=10)
    complaints_routing: dict[str, str] = Field(default=dict(DEFAULT_ROUTING))
    complaints_self_service_owner: str = Field(
        default="customer_service",
        description="Department whose desk is the first-contact owner of complaints customers "
        "file themselves in the app: its duty contact takes the owner's SLA messages and "
        "callbacks (an employee id here had them sent to nobody)",
    )
    complaints_self_service_branch: str = Field(
        default="online", description="Branch recorded for app filings without one"
    )

    def policy(self) -> ComplaintPolicy:
        """The domain policy these settings describe."""
        return ComplaintPolicy(
            response_hours=self.complaints_response_hours,
            resolution_hours=self.complaints_resolution_hours,
            warning_ratio=self.complaints_warning_ratio,
            second_escalation_ratio=self.complaints_second_escalation_ratio,
            urgent_amount=self.complaints_urgent_amount,
            repeat_window_days=self.complaints_repeat_window_days,
            regulatory_days=self.complaints_regulatory_days,
            regulatory_extension_days=self.complaints_regulatory_extension_days,
            callback_days=self.complaints_callback_days,
            service_flaw_points=self.complaints_service_flaw_points,
            fund_loss_rate=self.complaints_fund_loss_rate,
            detractor_max_nps=self.complaints_detractor_max_nps,
            routing=self.complaints_routing,
        )
