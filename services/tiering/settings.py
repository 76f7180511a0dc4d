"""Tiering settings: the shared ones plus port and FX rates."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from shared.settings import StewardSettings


class TieringSettings(StewardSettings):
    port: int = Field(default=8001, validation_alias="TIERING_PORT")
    # A batch is Python work, then database round trips in which the process would idle: a
    # second member of the group fills them (200,000 postings, one process: 6,900 → 8,800
    # events/s; Postgres and the service were taking turns). Each member owns partitions,
    # so twice the replicas must stay within the 12 of core.balance-changed.v1.
    consumer_concurrency: int = Field(default=2, ge=1)
    tiering_fx_rates: dict[str, Decimal] = Field(
        default={
            "USD": Decimal("7.10"),
            "EUR": Decimal("7.70"),
            "GBP": Decimal("9.00"),
            "HKD": Decimal("0.91"),
            "JPY": Decimal("0.047"),
        },
        description="CNY per unit of each foreign currency (JSON in TIERING_FX_RATES)",
    )
