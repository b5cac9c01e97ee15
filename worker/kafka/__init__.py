"""Kafka: the consume-route-commit loop, partition bookkeeping, the outbox, the control topic and topics."""
