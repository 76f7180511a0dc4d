"""Notifications service wiring: its consumer, its delivery timer, its routes, its migrations."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from services.notifications.api import router
from services.notifications.delivery import DeliverNotifications
from services.notifications.domain import RetryPolicy
from services.notifications.handlers import DELIVER, record_notifications
from services.notifications.providers import Provider, Sandbox, SmsGateway, WeChatOfficialAccount
from services.notifications.settings import NotificationsSettings
from shared.contracts.topics import (
    COMPLAINT_CALLBACK_DUE,
    COMPLAINT_UPDATED,
    PROFILE_CALLBACK_DUE,
    PROFILE_CHANGED,
    SLA_BREACHED,
    SLA_WARNING,
    TIER_CHANGED,
)
from shared.messaging.consumer import Subscription
from shared.service import Runtime, ServiceSpec, Wiring

TOPICS = (
    PROFILE_CHANGED,
    TIER_CHANGED,
    COMPLAINT_UPDATED,
    SLA_WARNING,
    SLA_BREACHED,
    COMPLAINT_CALLBACK_DUE,
    PROFILE_CALLBACK_DUE,
)


def providers(rt: Runtime, settings: NotificationsSettings) -> dict[str, Provider]:
    """The provider behind each channel, as configured (sandbox in dev by default)."""
    sandbox = Sandbox(rt.engine, rt.clock)
    timeout = settings.notifications_provider_timeout_seconds
    sms: Provider = sandbox
    if settings.notifications_sms_provider == "http":
        assert settings.notifications_sms_url and settings.notifications_sms_api_key
        assert settings.notifications_sms_secret
        sms = SmsGateway(
            settings.notifications_sms_url,
            settings.notifications_sms_api_key,
            settings.notifications_sms_secret.get_secret_value(),
            timeout,
        )
    wechat: Provider = sandbox
    if settings.notifications_wechat_provider == "wechat":
        assert settings.notifications_wechat_base_url and settings.notifications_wechat_app_id
        assert settings.notifications_wechat_app_secret
        wechat = WeChatOfficialAccount(
            settings.notifications_wechat_base_url,
            settings.notifications_wechat_app_id,
            settings.notifications_wechat_app_secret.get_secret_value(),
            timeout,
        )
    return {"sms": sms, "wechat": wechat}


def wire(rt: Runtime) -> Wiring:
    settings = rt.settings
    assert isinstance(settings, NotificationsSettings)
    rt.state["providers"] = providers(rt, settings)
    deliver = DeliverNotifications(
        rt.state["providers"],
        policy=RetryPolicy(
            max_attempts=settings.notifications_max_attempts,
            base_seconds=settings.notifications_retry_base_seconds,
            cap_seconds=settings.notifications_retry_cap_seconds,
        ),
        daily_cap=settings.notifications_daily_cap,
        concurrency=settings.notifications_delivery_concurrency,
        round_size=settings.notifications_delivery_round,
        # A slow provider holds a transaction for about one round: no further round starts
        # once one provider timeout has passed.
        round_budget=timedelta(seconds=settings.notifications_provider_timeout_seconds),
        unknown_recipient_grace=timedelta(
            seconds=settings.notifications_unknown_recipient_grace_seconds
        ),
        unknown_recipient_retry=timedelta(
            seconds=settings.notifications_unknown_recipient_retry_seconds
        ),
        clock=rt.clock,
    )
    return Wiring(
        subscriptions=[Subscription("events", TOPICS, record_notifications)],
        timer_handlers={DELIVER: deliver},
    )


SPEC = ServiceSpec(
    name="notifications",
    settings=NotificationsSettings,
    migrations=Path(__file__).parent / "migrations",
    wire=wire,
    routers=(router,),
)
