"""`FrozenModel`: a pydantic model for a value — it refuses fields it does not declare and cannot
be changed once made (a registry entry, the facts of a message)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FrozenModel(BaseModel):
    """A value: unknown fields are refused (`extra="forbid"`) and it is immutable (`frozen`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
