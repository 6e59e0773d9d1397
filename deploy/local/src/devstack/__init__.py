"""Local stack: Kafka, MinIO and PostgreSQL as plain processes, no Docker."""
