"""Prometheus metrics every service exposes on /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "steward_events_consumed_total",
    "Events taken from Kafka, by outcome (processed, duplicate, dead_lettered)",
    ["service", "topic", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "steward_handler_seconds",
    "Time to process one batch inside its transaction",
    ["service", "consumer"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TRANSIENT_FAILURES = Counter(
    "steward_transient_failures_total",
    "Batches retried because the database or broker was unavailable",
    ["service", "component"],
)
CONSUMER_LAG = Gauge(
    "steward_consumer_lag",
    "Messages behind the end of each assigned partition",
    ["service", "consumer", "topic", "partition"],
)
OUTBOX_PUBLISHED = Counter(
    "steward_outbox_published_total", "Outbox rows published", ["service", "topic"]
)
OUTBOX_BACKLOG = Gauge("steward_outbox_backlog", "Outbox rows not yet published", ["service"])
TIMERS_FIRED = Counter("steward_timers_fired_total", "Durable timers fired", ["service", "kind"])
