"""Backoff between attempts while the infrastructure is down; which faults are conflicts."""

from __future__ import annotations

import pytest

from shared.faults import backoff_seconds, is_conflict, is_transient

pytestmark = pytest.mark.unit


def test_backoff_grows_then_stays_under_the_cap():
    assert all(0 <= backoff_seconds(0) <= 0.2 for _ in range(100))
    assert all(0 <= backoff_seconds(3) <= 1.6 for _ in range(100))
    assert max(backoff_seconds(20) for _ in range(100)) <= 10.0


def test_backoff_after_hours_of_outage_is_still_a_number():
    """Attempt 1,024 and later (about 1.5 h of 5 s average waits) overflowed a float."""
    assert 0 <= backoff_seconds(1024) <= 10.0
    assert 0 <= backoff_seconds(100_000) <= 10.0


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def test_a_deadlock_or_serialization_failure_is_a_conflict_wherever_it_lies_in_the_chain():
    for sqlstate in ("40P01", "40001"):
        try:
            try:
                raise _PgError(sqlstate)
            except _PgError as pg:
                raise RuntimeError("wrapped by the driver") from pg
        except RuntimeError as exc:
            assert is_conflict(exc) and is_transient(exc)
    # Transient, but not a conflict: the work would meet the same outage again at once.
    assert is_transient(_PgError("08006")) and not is_conflict(_PgError("08006"))
    assert not is_conflict(_PgError("23505"))  # a unique violation is the input's
    assert not is_conflict(ValueError("no sqlstate"))
