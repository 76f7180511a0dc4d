"""Profile service wiring: its consumers, timers, routes and migrations."""

from __future__ import annotations

from pathlib import Path

from services.profile.api import router
from services.profile.handlers import ApplyProfileEvents
from services.profile.settings import ProfileSettings
from services.profile.signals import RecordSignals
from services.profile.warnings import (
    DAILY_SWEEP_TIMER,
    NEW_CUSTOMER_TIMER,
    POST_COMPLAINT_TIMER,
    TimeBasedRules,
    WarningDesk,
)
from shared.contracts.topics import (
    BALANCE_CHANGED,
    COMPLAINT_UPDATED,
    CUSTOMER_ACTIVITY,
    CUSTOMER_UPDATED,
    TIER_CHANGED,
)
from shared.messaging.consumer import Subscription
from shared.service import Runtime, ServiceSpec, Wiring


def wire(rt: Runtime) -> Wiring:
    settings = rt.settings
    assert isinstance(settings, ProfileSettings)
    policy = settings.warning_policy()
    desk = WarningDesk(policy, settings.profile_fallback_team)
    rules = TimeBasedRules(desk)
    return Wiring(
        subscriptions=[
            Subscription("profiles", (CUSTOMER_UPDATED, TIER_CHANGED), ApplyProfileEvents(policy)),
            Subscription(
                "signals",
                (BALANCE_CHANGED, CUSTOMER_ACTIVITY, COMPLAINT_UPDATED),
                RecordSignals(desk),
            ),
        ],
        timer_handlers={
            POST_COMPLAINT_TIMER: rules.post_complaint_inactivity,
            NEW_CUSTOMER_TIMER: rules.new_customer_inactive,
            DAILY_SWEEP_TIMER: rules.daily_sweep,
        },
    )


SPEC = ServiceSpec(
    name="profile",
    settings=ProfileSettings,
    migrations=Path(__file__).parent / "migrations",
    wire=wire,
    routers=(router,),
)
