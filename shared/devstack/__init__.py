"""Embedded development/test infrastructure: Postgres, a Kafka-protocol broker, topics."""
