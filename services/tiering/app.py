"""Tiering service wiring: its consumers, timers, routes and migrations."""

from __future__ import annotations

from pathlib import Path

from services.tiering.api import router
from services.tiering.handlers import (
    GRACE_END,
    REEVALUATE,
    ApplyBalanceChanges,
    end_grace,
    reevaluate,
)
from services.tiering.settings import TieringSettings
from shared.contracts.topics import BALANCE_CHANGED
from shared.messaging.consumer import Subscription
from shared.service import Runtime, ServiceSpec, Wiring


def wire(rt: Runtime) -> Wiring:
    settings = rt.settings
    assert isinstance(settings, TieringSettings)
    return Wiring(
        subscriptions=[
            Subscription(
                "balances", (BALANCE_CHANGED,), ApplyBalanceChanges(settings.tiering_fx_rates)
            )
        ],
        timer_handlers={GRACE_END: end_grace, REEVALUATE: reevaluate},
    )


SPEC = ServiceSpec(
    name="tiering",
    settings=TieringSettings,
    migrations=Path(__file__).parent / "migrations",
    wire=wire,
    routers=(router,),
)
