"""Config of monitoring: how drift is judged (``monitoring.drift``).

The method names here must match ``cd4ml.monitoring.methods`` (config imports nothing of
ours, so the names are listed, and a test checks the two lists are the same).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from cd4ml.config._strict import _Strict

#: The drift methods (``cd4ml.monitoring.methods.METHODS``).
DRIFT_METHODS: tuple[str, ...] = ("ks", "chisquare", "z", "wasserstein", "jensenshannon",
                                  "psi")


class DriftColumnConfig(_Strict):
    method: str | None = Field(None, description=(
        f"the column's drift method, one of {', '.join(DRIFT_METHODS)} (default: by the "
        "column's kind and the reference's size)"))
    threshold: float | None = Field(None, gt=0, description=(
        "p-value below which a test says drift, or distance from which a distance does"))

    @field_validator("method")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        if v is not None and v not in DRIFT_METHODS:
            raise ValueError(f"method = {v!r} is not a drift method; expected one of "
                             f"{', '.join(DRIFT_METHODS)}")
        return v


class DriftConfig(_Strict):
    alpha: float = Field(0.05, gt=0, le=1, description="significance level of the tests")
    min_effect: float = Field(0.1, gt=0, description=(
        "the normed Wasserstein or Jensen-Shannon distance a significant test must also show"))
    require_both: bool = Field(True, description=(
        "a verdict needs significance and a practical effect (false: the method alone)"))
    min_rows: int = Field(30, ge=1, description=(
        "fewer non-missing rows on a side: 'insufficient data', no verdict"))
    missing_rate_change: float = Field(0.1, gt=0, le=1, description=(
        "a change of the missing-value share this large (and significant) is drift"))
    new_category_rate: float = Field(0.05, gt=0, le=1, description=(
        "this share of values never seen in training is drift"))
    drift_share: float = Field(0.5, gt=0, le=1, description=(
        "the dataset drifts when this share of its columns does"))
    columns: dict[str, DriftColumnConfig] = Field(default_factory=dict)


class MonitoringConfig(_Strict):
    drift: DriftConfig = Field(default_factory=DriftConfig)
