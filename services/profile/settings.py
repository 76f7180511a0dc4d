"""Profile settings: the shared ones plus port and the early-warning thresholds."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from pydantic import Field

from services.profile.domain import WarningPolicy
from shared.settings import StewardSettings


class ProfileSettings(StewardSettings):
    port: int = Field(default=8004, validation_alias="PROFILE_PORT")
    consumer_pace_ms: float = Field(default=200, ge=0)  # off the customer-facing path
    profile_decline_ratio: Decimal = Field(default=Decimal("0.70"), gt=0, le=1)
    profile_decline_min_earlier: int = Field(default=6, ge=1)
    profile_browsing_days: int = Field(default=3, ge=2)
    profile_browsing_cooldown_days: int = Field(default=30, ge=0)
    profile_complaint_inactivity_days: int = Field(default=90, ge=1)
    profile_callback_within_hours: float = Field(
        default=48, gt=0, description="due_at of a callback = when it is raised + this"
    )
    profile_fallback_team: str = Field(
        default="customer_manager",
        description="Assignee when a customer has neither relationship manager nor tier",
    )

    def warning_policy(self) -> WarningPolicy:
        """The early-warning thresholds these settings configure."""
        return WarningPolicy(
            decline_ratio=self.profile_decline_ratio,
            decline_min_earlier=self.profile_decline_min_earlier,
            browsing_days=self.profile_browsing_days,
            browsing_cooldown_days=self.profile_browsing_cooldown_days,
            complaint_inactivity_days=self.profile_complaint_inactivity_days,
            callback_within=timedelta(hours=self.profile_callback_within_hours),
        )
