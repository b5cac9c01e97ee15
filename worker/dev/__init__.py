"""Development components: the embedded Kafka broker, the vision emulator and the demo; never imported
by the production path."""
