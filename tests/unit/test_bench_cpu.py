"""The benchmark's CPU tally: what a process adds to its role over a span."""

from __future__ import annotations

from bench.cpu import Tally


def test_a_process_running_before_the_span_counts_from_its_first_sample() -> None:
    tally = Tally(opened=1000.0)
    tally.add(7, "other", created=10.0, total=5000.0, queued=3600.0)  # up for hours
    tally.add(7, "other", created=10.0, total=5001.5, queued=3600.25)
    assert tally.spent["other"] == 1.5
    assert tally.waited["other"] == 0.25


def test_a_process_started_within_the_span_counts_all_its_time() -> None:
    tally = Tally(opened=1000.0)
    tally.add(8, "service tiering", created=1000.5, total=2.0, queued=0.5)
    tally.add(8, "service tiering", created=1000.5, total=3.0, queued=0.75)
    assert tally.spent["service tiering"] == 3.0
    assert tally.waited["service tiering"] == 0.75


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
