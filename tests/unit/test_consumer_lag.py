"""The consumer-lag gauge follows partition ownership: a revoked partition drops out, and
the consumer's own lag is unknown until it has fetched from its new assignment. A lag of 0
says "caught up since" only from fetches the broker answered after that moment."""

from __future__ import annotations

from typing import Any, cast

from aiokafka import TopicPartition

from shared.messaging.consumer import ConsumerRunner, Subscription
from shared.metrics import CONSUMER_LAG


async def _no_handler(tx: Any, events: Any) -> None:
    raise AssertionError("not called")


def _lags(service: str) -> dict[str, float]:
    return {
        sample.labels["partition"]: sample.value
        for metric in CONSUMER_LAG.collect()
        for sample in metric.samples
        if sample.labels["service"] == service
    }


def test_revoked_partitions_leave_the_lag_gauge_to_their_new_owner() -> None:
    runner = ConsumerRunner(
        service="lag-test",
        subscription=Subscription("postings", ("bank.postings",), _no_handler),
        uow=cast(Any, None),
        bootstrap_servers="unused:9092",
    )
    runner.lag = 0  # caught up with its assignment before the rebalance
    for partition, lag in ((0, 5), (1, 7)):
        CONSUMER_LAG.labels("lag-test", "postings", "bank.postings", partition).set(lag)

    # Partition 9 was never fetched here: nothing to drop, and no error.
    runner.forget_lag([TopicPartition("bank.postings", 0), TopicPartition("bank.postings", 9)])

    assert _lags("lag-test") == {"1": 7.0}
    assert runner.lag is None  # unknown until it fetched from its new partitions


class _Fetched:
    """The consumer's view after fetches: high-water marks, when they arrived, positions."""

    def __init__(self, highwater: int, position: int, received_at: float) -> None:
        self.tp = TopicPartition("bank.postings", 0)
        self._highwater, self._position = highwater, position
        self._received_ms = received_at * 1000

    def assignment(self) -> set[TopicPartition]:
        return {self.tp}

    def highwater(self, tp: TopicPartition) -> int:
        return self._highwater

    def last_poll_timestamp(self, tp: TopicPartition) -> float:
        return self._received_ms

    async def position(self, tp: TopicPartition) -> int:
        return self._position


async def test_a_lag_of_zero_counts_only_from_fetches_answered_after_the_moment() -> None:
    runner = ConsumerRunner(
        service="fresh-test",
        subscription=Subscription("postings", ("bank.postings",), _no_handler),
        uow=cast(Any, None),
        bootstrap_servers="unused:9092",
        fetch_max_wait_ms=200,
    )
    moment = 1_000.0
    # Caught up, but the response may have been answered from the log before `moment`.
    cast(Any, runner)._kafka = _Fetched(highwater=10, position=10, received_at=moment + 0.2)
    await cast(Any, runner)._record_lag()
    assert runner.lag == 0
    assert not runner.caught_up_since(moment)

    # Received after the fetch wait and a round trip: the broker read its log after `moment`.
    cast(Any, runner)._kafka = _Fetched(highwater=10, position=10, received_at=moment + 0.35)
    await cast(Any, runner)._record_lag()
    assert runner.caught_up_since(moment)

    # A fresh response that shows records still to process is not caught up either.
    cast(Any, runner)._kafka = _Fetched(highwater=12, position=10, received_at=moment + 0.35)
    await cast(Any, runner)._record_lag()
    assert runner.lag == 2
    assert not runner.caught_up_since(moment)
