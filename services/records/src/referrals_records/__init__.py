"""The records service (not built yet: see the open issues)."""
