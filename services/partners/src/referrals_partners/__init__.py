"""The partners service (not built yet: see the open issues)."""
