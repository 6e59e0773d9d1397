"""Records HTTP API."""
