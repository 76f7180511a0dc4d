"""Backoff between attempts while the infrastructure is down."""

from __future__ import annotations

import pytest

from shared.faults import backoff_seconds

pytestmark = pytest.mark.unit


def test_backoff_grows_then_stays_under_the_cap():
    assert all(0 <= backoff_seconds(0) <= 0.2 for _ in range(100))
    assert all(0 <= backoff_seconds(3) <= 1.6 for _ in range(100))
    assert max(backoff_seconds(20) for _ in range(100)) <= 10.0


def test_backoff_after_hours_of_outage_is_still_a_number():
    """Attempt 1,024 and later (about 1.5 h of 5 s average waits) overflowed a float."""
    assert 0 <= backoff_seconds(1024) <= 10.0
    assert 0 <= backoff_seconds(100_000) <= 10.0
