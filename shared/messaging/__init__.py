"""Kafka side of the platform: producer, outbox + relay, inbox, consumer runner."""
