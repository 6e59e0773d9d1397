"""Reliable messaging: transactional outbox and relay, idempotent consumers, dead letters."""
