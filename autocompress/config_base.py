"""What every section of a study file is made of; light (pydantic only), so the task
kinds' settings (`autocompress.tasks.*_config`) and `autocompress.config` share it
without importing each other."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# A share of the rows held out for a split.
Fraction = Annotated[float, Field(gt=0.0, lt=0.5)]


class Strict(BaseModel):
    """A study-file section: unknown keys are refused, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
