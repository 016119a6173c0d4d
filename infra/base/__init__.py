"""The shared base: configuration, the Kafka, ClickHouse and schema-registry clients, secrets,
heartbeats. Imports nothing of ours but `schemas/`."""
