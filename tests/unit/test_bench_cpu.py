"""The benchmark's CPU tally: what a process adds to its role over a span."""

from __future__ import annotations

import pytest

from bench.cpu import Tally


@pytest.mark.parametrize(
    ("created", "spent", "waited"),
    [
        (10.0, 1.5, 0.25),  # up for hours, missed by the first sample: from its first one on
        (1000.5, 5001.5, 3600.25),  # started within the span: all its time
    ],
)
def test_a_process_first_seen_mid_span_counts_all_its_time_only_if_it_started_in_it(
    created: float, spent: float, waited: float
) -> None:
    tally = Tally(opened=1000.0)
    tally.add(7, "other", created=created, total=5000.0, queued=3600.0)
    tally.add(7, "other", created=created, total=5001.5, queued=3600.25)
    assert tally.spent["other"] == spent
    assert tally.waited["other"] == waited


def test_a_reused_pid_is_a_new_process() -> None:
    tally = Tally(opened=1000.0)
    tally.add(9, "broker", created=900.0, total=40.0, queued=1.0)
    tally.add(9, "broker", created=900.0, total=42.0, queued=1.5)
    tally.add(9, "bench process", created=1001.0, total=0.5, queued=0.0)  # the pid again
    assert tally.spent == {"broker": 2.0, "bench process": 0.5}
    assert tally.waited["broker"] == 0.5


def test_an_exiting_process_keeps_its_role() -> None:
    tally = Tally(opened=1000.0)
    tally.add(10, "postgres", created=1000.0, total=1.0, queued=0.0)
    tally.add(10, "other", created=1000.0, total=1.25, queued=0.0)  # a zombie has no name
    assert tally.spent == {"postgres": 1.25}


def test_an_unread_run_queue_time_is_no_baseline() -> None:
    # Stored as 0, a failed read would make a process up for hours add all its past waits.
    tally = Tally(opened=1000.0)
    tally.add(11, "other", created=10.0, total=5000.0, queued=None)
    tally.add(11, "other", created=10.0, total=5000.5, queued=3600.0)
    tally.add(11, "other", created=10.0, total=5001.0, queued=None)
    tally.add(11, "other", created=10.0, total=5001.5, queued=3600.5)
    assert tally.spent["other"] == 1.5
    assert tally.waited["other"] == 0.5
