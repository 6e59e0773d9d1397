"""Fault tests: the whole platform on a stack of its own, cases flowing, processes and
infrastructure failing under them (pytest marker `chaos`)."""
