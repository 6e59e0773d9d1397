"""The web app's session realms by path: the patient's pages, the center console and the ops
screen each keep their own session and cookie. One module that the app and its pages both read,
so neither imports the other."""

from __future__ import annotations

CONSOLE_PREFIX = "/center"
OPS_PREFIX = "/ops"


def is_console(path: str) -> bool:
    """Whether `path` is a page of the center console (its own session realm and cookie)."""
    return path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")


def is_ops(path: str) -> bool:
    """Whether `path` is a page of the ops screen (its own session realm and cookie)."""
    return path == OPS_PREFIX or path.startswith(OPS_PREFIX + "/")
