"""The translation service (not built yet: see the open issues)."""
