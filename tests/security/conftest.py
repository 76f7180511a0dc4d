"""The four services, started once for the security tests, each in a schema of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.complaints.app import SPEC as COMPLAINTS
from services.notifications.app import SPEC as NOTIFICATIONS
from services.profile.app import SPEC as PROFILE
from services.tiering.app import SPEC as TIERING
from shared.testing.fleet import running_fleet
from shared.testing.infra import Infrastructure
from shared.testing.services import RunningService

SPECS = (TIERING, COMPLAINTS, PROFILE, NOTIFICATIONS)


@pytest.fixture(scope="package")
async def fleet(infra: Infrastructure) -> AsyncIterator[dict[str, RunningService]]:
    async with running_fleet(SPECS, infra) as services:
        yield services
