"""The notification service, started once for these tests, against a fake HTTP gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from services.notifications.app import SPEC
from services.notifications.domain import BANK_TZ
from shared.clock import DevClock
from shared.contracts.topics import NOTIFICATION_STATUS, OPS_ALERTS
from shared.testing.infra import Infrastructure
from shared.testing.kafka import TopicWatcher
from shared.testing.services import RunningService, running_service, service_settings
from tests.integration.notifications.fake_gateway import FakeGateway

DAILY_CAP = 3
TEAMS = ("branch_service", "customer_manager", "wealth_team", "private_banking")


def team_mobile(team: str) -> str:
    return f"+86139{TEAMS.index(team):08d}"


@pytest.fixture(scope="package")
async def gateway() -> AsyncIterator[FakeGateway]:
    fake = await FakeGateway().start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="package")
async def notifications(
    infra: Infrastructure, gateway: FakeGateway
) -> AsyncIterator[RunningService]:
    """The service with its real HTTP adapters pointed at the fake gateway, fast retries."""
    settings = service_settings(
        SPEC,
        infra,
        notifications_sms_provider="http",
        notifications_sms_url=f"{gateway.url}/sms/send",
        notifications_sms_api_key=gateway.api_key,
        notifications_sms_secret=gateway.secret,
        notifications_wechat_provider="wechat",
        notifications_wechat_base_url=gateway.url,
        notifications_wechat_app_id=gateway.app_id,
        notifications_wechat_app_secret=gateway.app_secret,
        notifications_provider_timeout_seconds=0.5,
        notifications_retry_base_seconds=0.05,
        notifications_retry_cap_seconds=0.2,
        notifications_daily_cap=DAILY_CAP,
        # A minute's grace, looking again every 5 s: a profile published after its message
        # has a minute of real time to arrive however slow the machine, and a test that needs
        # the grace over moves the clock past it.
        notifications_unknown_recipient_grace_seconds=60,
        notifications_unknown_recipient_retry_seconds=5,
    )
    async with running_service(SPEC, settings) as svc:
        # Start on a working morning (09:00 Shanghai) so default quiet hours stay out of
        # the way of the tests that are not about them.
        now = svc.runtime.clock.now().astimezone(BANK_TZ)
        nine = datetime.combine(now.date(), datetime.min.time(), tzinfo=BANK_TZ) + timedelta(
            hours=9
        )
        if nine <= now:
            nine += timedelta(days=1)
        clock = svc.runtime.clock
        assert isinstance(clock, DevClock)
        clock.advance((nine - now).total_seconds())
        admin = svc.token("admin")
        for team in TEAMS:
            response = await svc.http.put(
                f"/departments/{team}/duty-contact",
                json={"name": f"{team} desk", "mobile": team_mobile(team)},
                headers=admin,
            )
            assert response.status_code == 200, response.text
        yield svc


@pytest.fixture(scope="package")
async def status_watcher(infra: Infrastructure) -> AsyncIterator[TopicWatcher]:
    watcher = await TopicWatcher(infra.bootstrap_servers, NOTIFICATION_STATUS).start()
    yield watcher
    await watcher.stop()


@pytest.fixture(scope="package")
async def alert_watcher(infra: Infrastructure) -> AsyncIterator[TopicWatcher]:
    watcher = await TopicWatcher(infra.bootstrap_servers, OPS_ALERTS).start()
    yield watcher
    await watcher.stop()
