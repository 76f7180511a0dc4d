"""The consumer-lag gauge follows partition ownership: a revoked partition drops out, and
the consumer's own lag is unknown until it has fetched from its new assignment."""

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
