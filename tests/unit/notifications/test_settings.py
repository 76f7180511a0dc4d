"""Production refuses the sandbox providers, which report delivered and send nothing."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.notifications.settings import NotificationsSettings

pytestmark = pytest.mark.unit

BASE = {
    "kafka_bootstrap_servers": "127.0.0.1:1",
    "database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/none",
    "steward_jwt_secret": "a-production-secret-0123456789abcdef",
}
REAL = {
    "notifications_sms_provider": "http",
    "notifications_sms_url": "https://sms.invalid/send",
    "notifications_sms_api_key": "key",
    "notifications_sms_secret": "signing-secret",
    "notifications_wechat_provider": "wechat",
    "notifications_wechat_base_url": "https://wechat.invalid",
    "notifications_wechat_app_id": "app",
    "notifications_wechat_app_secret": "app-secret",
}


def settings(**values: Any) -> NotificationsSettings:
    return NotificationsSettings(**(BASE | values))


def test_prod_refuses_a_sandbox_provider_and_names_it():
    with pytest.raises(ValidationError, match="NOTIFICATIONS_WECHAT_PROVIDER=sandbox"):
        settings(steward_env="prod", **REAL | {"notifications_wechat_provider": "sandbox"})
    with pytest.raises(ValidationError, match="NOTIFICATIONS_SMS_PROVIDER and"):
        settings(steward_env="prod")


def test_prod_takes_real_providers_and_a_staging_system_the_sandbox():
    assert settings(steward_env="prod", **REAL).notifications_sms_provider == "http"
    staging = settings(steward_env="prod", notifications_allow_sandbox=True)
    assert staging.notifications_sms_provider == "sandbox"
    assert settings().notifications_wechat_provider == "sandbox"  # dev: the default
