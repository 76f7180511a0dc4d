"""Field types every contract uses: exact money, aware timestamps, frozen models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    WithJsonSchema,
)

# What every service stores an amount as, NUMERIC(18, 2): two places (DOMAIN.md: "amounts
# are exact decimals (two places)"), sixteen digits before the point. An amount outside it
# is refused where it comes in, naming its field: Postgres would round a third place away,
# or refuse the amount and fail the statement that stores it.
_CENT = Decimal("0.01")
MONEY_LIMIT = Decimal(10) ** 16
"""Every amount lies strictly between -MONEY_LIMIT and MONEY_LIMIT."""


def _parse_money(value: Any) -> Decimal:
    # bool is an int subclass; a float has already lost exactness — both are refused.
    if isinstance(value, bool | float):
        raise ValueError("amounts must be JSON strings or integers, not floats")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal amount") from None
    else:
        raise ValueError(f"amounts must be strings or integers, got {type(value).__name__}")
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not a finite amount")
    # adjusted(): the exponent of the leading digit (16 from 1e16 up); same_quantum: written
    # with exactly two places, as nearly all are. Cheaper than abs() and quantize() (on
    # every posting: parsing one took 0.6 µs longer with them).
    if amount and amount.adjusted() >= 16:
        raise ValueError(f"{value!r} is out of range: at most 16 digits before the point")
    if not amount.same_quantum(_CENT) and amount != amount.quantize(_CENT):
        raise ValueError(f"{value!r} has more than two decimal places")
    return amount


Money = Annotated[
    Decimal,
    BeforeValidator(_parse_money),
    PlainSerializer(lambda amount: format(amount, "f"), return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "string", "pattern": r"^-?\d{1,16}(\.\d{1,2})?$"},
                {"type": "integer", "exclusiveMinimum": -(10**16), "exclusiveMaximum": 10**16},
            ],
            "description": "Exact decimal as a JSON string, at most two decimal places and 16 "
            "digits before the point (integers accepted, floats rejected)",
            "examples": ["50000.00"],
        }
    ),
]
"""A decimal amount of at most two places and 16 digits before the point: from a string or
an integer, never a float; serialised as a string."""

MoneyTotal = Annotated[
    Decimal,
    PlainSerializer(lambda amount: format(amount, "f"), return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^-?\d+(\.\d+)?$",
            "description": "Exact decimal as a JSON string",
            "examples": ["123456789.00"],
        }
    ),
]
"""A sum of amounts in a report (a tier's deposits, a year's turnover): exact, serialised as
a string, and not held to one amount's 16 digits."""

# Postgres refuses a UTC offset of 16 hours or more ("time zone displacement out of
# range"); the offsets in use lie between -12:00 and +14:00.
_OFFSET_LIMIT = timedelta(hours=16)


# Years a bank's events and requests can mean. Postgres stores far wider ones, but near
# year 1 or 9999 a stored time did not read back (asyncpg: "date value out of range" once
# in UTC), and every later batch reading that row failed.
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST = datetime(3000, 1, 1, tzinfo=UTC)


def _storable(value: datetime) -> datetime:
    offset = value.utcoffset()
    if offset is not None and abs(offset) >= _OFFSET_LIMIT:
        raise ValueError("the UTC offset must lie within -15:59 and +15:59")
    # The year first: comparing aware datetimes costs about 2 µs each (both offsets are
    # looked up), and only a time near the bounds needs it.
    if not 1900 < value.year < 2999 and not _EARLIEST <= value < _LATEST:
        raise ValueError("the time must lie from 1900-01-01 to before 3000-01-01 (UTC)")
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_storable)]
"""RFC 3339 with an offset, from 1900 to before 3000 (UTC); a naive timestamp, an offset of
16 hours or more, or a time outside those years is a bad input."""


class Contract(BaseModel):
    """Base of every event payload: frozen, unknown extra fields ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")
