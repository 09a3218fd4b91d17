"""Kafka transport: CloudEvents envelope, client settings, topic admin, outbox relay, consumers."""
