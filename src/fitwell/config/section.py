"""The base of every config section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: unknown keys are errors, and a validated config is frozen (a changed value
    is a new config from ``fitwell.config.resolve.replace_values``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
