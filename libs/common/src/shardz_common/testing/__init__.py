"""Test support: real PostgreSQL databases and RabbitMQ probes, each test's data its own."""
