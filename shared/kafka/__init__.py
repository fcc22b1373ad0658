"""Kafka adapters: admin (topics, readiness), producer, consumer runner."""
