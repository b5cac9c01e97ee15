"""Component tests: the real Kafka loop against faithful in-memory fakes of the consumer and the producer."""
