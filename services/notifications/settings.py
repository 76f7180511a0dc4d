"""Notification settings: port, providers and their credentials, delivery policy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from shared.settings import StewardSettings


class NotificationsSettings(StewardSettings):
    port: int = Field(default=8003, validation_alias="NOTIFICATIONS_PORT")
    # Two delivery workers: one sends a round while the other's SQL runs. A burst of 50,000
    # CallbackDue went out at 2,642 to 2,833 msg/s against 2,189 to 2,500 with one (four
    # alternating pairs); the daily cap's slots are taken atomically, in customer order.
    timer_concurrency: int = Field(default=2, ge=1)
    # Tier changes, SLA alerts and callbacks reach customers through here: the shorter
    # fetch wait of tiering (see services/tiering/settings.py for the figures).
    consumer_fetch_max_wait_ms: int = Field(default=25, ge=1)

    notifications_sms_provider: Literal["sandbox", "http"] = Field(
        default="sandbox", description="`http` = the SMS gateway below; `sandbox` in dev"
    )
    notifications_sms_url: str | None = Field(default=None, description="Gateway send URL")
    notifications_sms_api_key: str | None = None
    notifications_sms_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 signing secret of the gateway"
    )

    notifications_wechat_provider: Literal["sandbox", "wechat"] = "sandbox"
    notifications_wechat_base_url: str | None = Field(
        default=None, description="Official-account API base URL"
    )
    notifications_wechat_app_id: str | None = None
    notifications_wechat_app_secret: SecretStr | None = None

    notifications_allow_sandbox: bool = Field(
        default=False,
        description="Let STEWARD_ENV=prod send through a sandbox provider (a staging system): "
        "the sandbox records a message as delivered and sends nothing",
    )

    notifications_provider_timeout_seconds: float = Field(default=5.0, gt=0)
    notifications_max_attempts: int = Field(
        default=3, ge=1, description="Attempts per channel before falling back or failing"
    )
    notifications_retry_base_seconds: float = Field(default=30.0, gt=0)
    notifications_retry_cap_seconds: float = Field(default=900.0, gt=0)
    notifications_daily_cap: int = Field(
        default=5, ge=0, description="Non-urgent messages per customer per Asia/Shanghai day"
    )
    notifications_delivery_concurrency: int = Field(
        default=16, ge=1, description="Calls in flight at once to each remote provider"
    )
    notifications_delivery_round: int = Field(
        default=500,
        ge=1,
        description="Messages one delivery round sends (at most what one timer claim brings: "
        "500); a transaction starts a further round only within one provider timeout",
    )
    notifications_unknown_recipient_grace_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How long a message waits for its customer's profile to arrive",
    )
    notifications_unknown_recipient_retry_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often a message waiting for its customer's profile looks again "
        "(at most the grace)",
    )

    @model_validator(mode="after")
    def _providers_are_configured(self) -> NotificationsSettings:
        sandboxed = [
            name
            for name, provider in (
                ("NOTIFICATIONS_SMS_PROVIDER", self.notifications_sms_provider),
                ("NOTIFICATIONS_WECHAT_PROVIDER", self.notifications_wechat_provider),
            )
            if provider == "sandbox"
        ]
        if self.steward_env == "prod" and sandboxed and not self.notifications_allow_sandbox:
            raise ValueError(
                f"STEWARD_ENV=prod with {' and '.join(sandboxed)}=sandbox would report "
                "messages delivered and send none: configure the real providers, or set "
                "NOTIFICATIONS_ALLOW_SANDBOX=true for a staging system"
            )
        if self.notifications_sms_provider == "http" and not (
            self.notifications_sms_url
            and self.notifications_sms_api_key
            and self.notifications_sms_secret
        ):
            raise ValueError(
                "NOTIFICATIONS_SMS_PROVIDER=http needs NOTIFICATIONS_SMS_URL, "
                "NOTIFICATIONS_SMS_API_KEY and NOTIFICATIONS_SMS_SECRET"
            )
        if self.notifications_wechat_provider == "wechat" and not (
            self.notifications_wechat_base_url
            and self.notifications_wechat_app_id
            and self.notifications_wechat_app_secret
        ):
            raise ValueError(
                "NOTIFICATIONS_WECHAT_PROVIDER=wechat needs NOTIFICATIONS_WECHAT_BASE_URL, "
                "NOTIFICATIONS_WECHAT_APP_ID and NOTIFICATIONS_WECHAT_APP_SECRET"
            )
        return self
