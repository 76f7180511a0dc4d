"""Complaints service wiring: its consumers, timers, routes and migrations."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from services.complaints.api import router
from services.complaints.domain import TIMER_CALLBACK, TIMER_SLA
from services.complaints.handlers import (
    FileComplaintsFromChannels,
    FileFromApi,
    FireSlaTimers,
    apply_tier_changes,
    fire_callback_timers,
)
from services.complaints.settings import ComplaintsSettings
from shared.contracts.topics import COMPLAINT_FILED, TIER_CHANGED
from shared.group_commit import GroupCommit
from shared.messaging.consumer import Subscription
from shared.ratelimit import RateLimit
from shared.service import Runtime, ServiceSpec, Wiring


def wire(rt: Runtime) -> Wiring:
    settings = rt.settings
    assert isinstance(settings, ComplaintsSettings)
    policy = settings.policy()
    rt.state["policy"] = policy
    # POST /complaints: concurrent requests are filed together, in shared transactions.
    filing_limit = RateLimit(settings.complaints_filing_limit_per_hour, timedelta(hours=1))
    rt.state["filings"] = GroupCommit(
        rt.uow,
        FileFromApi(policy, filing_limit),
        linger=settings.complaints_filing_linger_ms / 1000,
    )
    return Wiring(
        subscriptions=[
            Subscription("filings", (COMPLAINT_FILED,), FileComplaintsFromChannels(policy)),
            Subscription("tiers", (TIER_CHANGED,), apply_tier_changes),
        ],
        timer_handlers={TIMER_SLA: FireSlaTimers(policy), TIMER_CALLBACK: fire_callback_timers},
    )


SPEC = ServiceSpec(
    name="complaints",
    settings=ComplaintsSettings,
    migrations=Path(__file__).parent / "migrations",
    wire=wire,
    routers=(router,),
)
