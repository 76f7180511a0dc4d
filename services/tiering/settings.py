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
    # so twice the replicas must stay within the 12 of core.balance-changed.v1. At a steady
    # 500 postings/s one member used less CPU (0.20 of a core against 0.23) but did not lower
    # the end-to-end p99 (339.2 / 239.7 / 266.2 against 246.4 / 247.5 / 301.2 ms).
    consumer_concurrency: int = Field(default=2, ge=1)
    # On the customer-facing path (a posting → its tier change → the customer's message) the
    # embedded broker answers a fetch about a quarter of the wait late (docs/performance.md):
    # 50 here and in notifications instead of 200 took the end-to-end p99 at 500 postings/s
    # from 312 / 385 / 372 / 357 ms to 290 / 334 / 269 / 316 (alternating runs), for 0.01
    # more of a core in each of the two services and up to 0.05 more in the idle broker;
    # 25 instead of 50 to 197 / 186 / 202 from 242 / 196 / 294, the p50 of each broker hop
    # down by 2 to 5 ms, the broker at 0.46 of a core against 0.43 to 0.45; 10 instead of 25
    # to 569.8 / 475.4 from 358.1 / 313.3 ms, the broker busier (0.51 against 0.47 to 0.48).
    consumer_fetch_max_wait_ms: int = Field(default=25, ge=1)
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
