"""Which failures are transient (retry, never dead-letter) and how long to back off."""

from __future__ import annotations

import random
from collections.abc import Iterator

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NotControllerError
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# Postgres SQLSTATE classes that say "try again": connection, resources, shutdown,
# serialization failure, deadlock.
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "53", "57P", "40001", "40P01", "55P03")
_CONFLICT_SQLSTATES = ("40001", "40P01")  # serialization failure, deadlock


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception behind it (cause, context, a DBAPI error's original)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend([current.__cause__, current.__context__, getattr(current, "orig", None)])


def is_transient(exc: BaseException) -> bool:
    """True for faults of the infrastructure (DB or broker down, timeouts), not of the input."""
    for cause in causes(exc):
        if isinstance(cause, ConnectionError | TimeoutError | OSError | PoolTimeout):
            return True
        if isinstance(cause, DisconnectionError):
            return True
        if isinstance(cause, DBAPIError) and cause.connection_invalidated:
            return True
        if isinstance(cause, KafkaConnectionError | KafkaTimeoutError | NotControllerError):
            return True
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_TRANSIENT_SQLSTATE_PREFIXES):
            return True
        if type(cause).__name__ in {"ConnectionDoesNotExistError", "InterfaceError"}:
            return True
    return False


def is_conflict(exc: BaseException) -> bool:
    """True when Postgres aborted the transaction to end a deadlock or a serialization
    failure: the transaction it ran into goes through, so the same work again can too."""
    return any(getattr(cause, "sqlstate", None) in _CONFLICT_SQLSTATES for cause in causes(exc))


def backoff_seconds(attempt: int, *, base: float = 0.2, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter. The exponent stops growing long after the cap is
    reached: 2.0 ** 1024 overflows, the 1,024th attempt of an outage about 1.5 h long."""
    return random.uniform(0, min(cap, base * 2.0 ** min(attempt, 64)))
