"""Tiering settings: the shared ones plus port and FX rates."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from shared.settings import StewardSettings


class TieringSettings(StewardSettings):
    port: int = Field(default=8001, validation_alias="TIERING_PORT")
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
