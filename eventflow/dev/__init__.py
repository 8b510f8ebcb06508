"""Real services for development and tests, started from packages: Kafka and PostgreSQL."""
