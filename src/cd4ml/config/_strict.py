"""The base of every config section: unknown keys refused, values frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

CONFIG_FILE = "cd4ml.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
