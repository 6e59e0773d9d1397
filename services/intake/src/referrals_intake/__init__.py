"""The intake service (not built yet: see the open issues)."""
