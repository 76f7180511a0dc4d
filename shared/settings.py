"""Run-time configuration shared by every service (environment variables of DESIGN.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "steward-dev-secret-do-not-use-in-production"
TEST_JWT_SECRET = "steward-test-secret-0123456789abcdef"
PROD_MIN_SECRET_BYTES = 32  # HS256's own key length; a short secret can be guessed offline


class StewardSettings(BaseSettings):
    """Settings every service reads; a service subclasses it to add its own and its port."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    kafka_bootstrap_servers: str = Field(description="Broker address list")
    database_url: str = Field(description="postgresql+asyncpg://… (one schema per service)")
    steward_env: Literal["dev", "prod"] = "dev"
    steward_jwt_secret: SecretStr | None = Field(
        default=None, description="HS256 secret; required unless RS256/JWKS is configured"
    )
    steward_jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    steward_jwks_url: str | None = Field(default=None, description="JWKS for RS256 tokens")
    steward_jwt_issuer: str | None = Field(
        default=None,
        description="The `iss` a token must carry (the identity provider; RS256 deployments "
        "should set it: other apps' tokens may be signed with keys of the same JWKS)",
    )
    steward_jwt_audience: str | None = Field(
        default=None, description="The `aud` a token must carry; unset, a token with one is refused"
    )
    steward_kafka_idempotence: bool = False
    steward_log_level: str = "INFO"
    consumer_batch_size: int = Field(default=1000, ge=1)
    consumer_fetch_max_wait_ms: int = Field(
        default=200,
        ge=1,
        description="How long the broker may hold a fetch for which it has no records. The "
        "embedded broker at 200: a lone record reached an idle consumer after a median 15 ms, a "
        "steady 500/s stream after p50 50 ms, p99 104 ms; idle consumers polling every 20 ms "
        "kept it at a third of a core (see docs/performance.md)",
    )
    consumer_pace_ms: float = Field(
        default=0,
        ge=0,
        description="While a consumer is caught up, at most one batch per this many ms. The "
        "embedded broker lists every batch a partition holds to answer a fetch that finds "
        "records there, so each fetch of a busy partition costs more as the topic grows; "
        "services off the customer-facing path fetch less often (profile, complaints: 200)",
    )
    consumer_concurrency: int = Field(
        default=1,
        ge=1,
        description="Consumers per subscription in one process, each owning a share of the "
        "partitions: one batch's database work overlaps another's decoding. Keep replicas times "
        "this ≤ the partitions of the service's topics (an idle member is not ready)",
    )
    timer_concurrency: int = Field(
        default=1,
        ge=1,
        description="Timer workers in one process, claiming due timers with SKIP LOCKED as "
        "replicas do: one batch's handler runs while another's SQL is in Postgres "
        "(complaints defaults to 2)",
    )
    outbox_batch_size: int = Field(
        default=4000,
        ge=1,
        description="Outbox rows the relay reads, publishes and deletes (or marks sent) per "
        "round trip. It shares its process with the consumers and timers, whose work holds "
        "the event loop between its awaits: 100,000 breaches in two complaints replicas, "
        "four alternating pairs, were all published 2.6 to 5.3 s after the last timer fired "
        "at 1,000, 0.4 to 1.2 s at 4,000 (in all 12.2 to 18.6 s against 9.7 to 13.1 s)",
    )
    outbox_keep_sent_hours: float = Field(
        default=0,
        ge=0,
        description="How long published outbox rows stay in the schema, marked sent. 0: deleted "
        "in the transaction that saw the broker acknowledge them (the topic keeps them). "
        "Marking rewrites each row, event and all: 100,000 SLA breaches in one complaints "
        "process were published in 16.7 to 20.1 s deleting, 21.4 to 24.7 s marking "
        "(alternating pairs)",
    )
    retention_hours: float = Field(
        default=168,
        gt=0,
        description="How long inbox ids (and timers an older release marked fired) are "
        "kept: at least as long as the consumed topics keep messages (7 days), so a replay "
        "meets the ids it already processed",
    )
    http_telemetry: bool = Field(
        default=False,
        description="FastAPI's native OpenTelemetry for each request (a span, metrics, logs) "
        "through the OpenTelemetry providers this process is given. No service configures "
        "any (their metrics are Prometheus, `/metrics`); off, FastAPI no longer looks for "
        "them in every request: a request took 73.4 against 85.6 µs (in-process, GET "
        "/healthz on a bare FastAPI app, medians of 7 runs of 5,000)",
    )
    http_max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="A request body over this many bytes answers 413 (the largest a service "
        "takes, a complaint of 4,000 characters, is about 12 KB): stored, an oversized value "
        "went on in the service's events, and an event the broker refuses (1 MB) stops the "
        "outbox relay, which publishes in order",
    )
    port: int = 8000
    # STEWARD_HOST, not HOST: shells (tcsh) set HOST to the machine's name.
    steward_host: str | None = Field(
        default=None,
        description="Interface the API listens on: by default every one in prod (a "
        "container's), only loopback in dev, where tokens are signed with a secret from "
        "this repository and /admin/clock moves the clocks",
    )
    schema_name: str | None = Field(
        default=None, description="Override the service's schema (tests, side-by-side runs)"
    )

    @property
    def is_dev(self) -> bool:
        return self.steward_env == "dev"

    @property
    def listen_host(self) -> str:
        return self.steward_host or ("127.0.0.1" if self.is_dev else "0.0.0.0")

    @model_validator(mode="after")
    def _auth_is_configured(self) -> StewardSettings:
        if self.steward_jwt_algorithm == "HS256" and self.steward_jwt_secret is None:
            raise ValueError("STEWARD_JWT_SECRET is required for HS256 tokens")
        if self.steward_jwt_algorithm == "RS256" and not self.steward_jwks_url:
            raise ValueError("STEWARD_JWKS_URL is required for RS256 tokens")
        if self.steward_env == "prod" and self.steward_jwt_algorithm == "HS256":
            # Anyone who knows the secret mints admin tokens: not one from this repository,
            # nor one short enough to guess.
            secret = self.steward_jwt_secret.get_secret_value() if self.steward_jwt_secret else ""
            if secret == DEV_JWT_SECRET:
                raise ValueError("STEWARD_ENV=prod refuses the dev JWT secret")
            if secret == TEST_JWT_SECRET:
                raise ValueError("STEWARD_ENV=prod refuses the test JWT secret")
            if len(secret.encode()) < PROD_MIN_SECRET_BYTES:
                raise ValueError(
                    f"STEWARD_ENV=prod needs a STEWARD_JWT_SECRET of {PROD_MIN_SECRET_BYTES} "
                    "bytes or more"
                )
        return self
