"""What the prediction log says about each arm of a rollout: monitoring's judgement of
a version's window in one role, and per-row outcomes for A/B tests and bandits.

The controller's reading side (:mod:`cd4ml.rollout.controller`); the statistics are
monitoring's own (:func:`cd4ml.pipeline.monitor_log.judge_frame` on the rows of
:func:`cd4ml.pipeline.monitor_cache.window_frame`), not computed again here.

Outcomes (:func:`outcomes`) are one number per logged row of a live arm: the feedback's
``reward`` (``source="reward"``), or one derived from the ``actual`` (``"actual"``: 1
when a classifier's label was right, else 0; a regressor's or forecast's absolute
error, lower is better), ``"auto"``: rewards where the window has any, else actuals. A
reward that is not a finite number, or outside [0, 1] for a binary bandit, is left out
and counted; feedback for a request id the log does not hold never joins a row, so it
counts for nothing. (The log stores a NaN reward as no reward.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["judge_version", "outcomes", "Outcomes"]


def judge_version(cfg: Any, root: Path, stores: Any, model: str, version: int, role: str,
                  *, since: float | None, until: float | None = None,
                  memo: dict[str, Any] | None = None) -> dict[str, Any]:
    """Monitoring's judgement (``judge_frame``'s document) of ``version``'s rows logged
    in ``role`` over ``[since, until)``; ``{"state": "no reference", "message": …}``
    for a version registered without a reference profile."""
    from cd4ml.monitoring import DriftSettings, reference_of
    from cd4ml.pipeline.monitor_cache import window_frame
    from cd4ml.pipeline.monitor_log import judge_frame

    row = stores.metadata.resolve(model, int(version))
    found = reference_of(row, stores.artifacts)
    if found.reference is None:
        return {"state": found.state, "message": found.message}
    settings = DriftSettings.from_config(cfg.monitoring.drift)
    manifest = stores.artifacts.get_json(row["digest"])
    memo = {} if memo is None else memo
    df = window_frame(cfg, root, stores, row, found.reference, manifest, memo, since=since,
                      until=until, settings=settings)
    df = df[(df["arm"] == role).to_numpy()].reset_index(drop=True)
    doc = judge_frame(cfg, stores, row, found.reference, settings, df, manifest, memo)
    return {"state": "ok", **doc}


@dataclass(frozen=True)
class Outcomes:
    """Per arm (``v3``), the outcomes of its rows; ``kind``: ``reward``, ``correct`` or
    ``abs_error``; ``ignored``: rows left out, by why; ``without``: rows with no feedback."""

    values: Mapping[str, np.ndarray]
    kind: str
    higher_is_better: bool
    ignored: Mapping[str, int] = field(default_factory=dict)
    without: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "higher_is_better": self.higher_is_better,
                "rows": {a: int(len(v)) for a, v in self.values.items()},
                "ignored": dict(self.ignored), "without_feedback": self.without}


def outcomes(cfg: Any, root: Path, model: str, arms: Mapping[str, tuple[int, str]], *,
             since: float | None, source: str = "auto", binary: bool = False) -> Outcomes:
    """The outcomes of each arm (``{"v3": (3, "stable"), "v4": (4, "arm")}``: its version
    and role) in the log since ``since``; ``binary``: rewards must be in [0, 1]."""
    from cd4ml.predlog import batches

    if source not in ("auto", "reward", "actual"):
        raise ValueError(f"source == {source!r}, must be 'auto', 'reward' or 'actual'")
    df = batches(cfg.serving.log.folder_in(root), since=since, model=model,
                 with_features=False, with_inputs=False).read_all().to_pandas()
    wanted = np.zeros(len(df), dtype=bool)
    names = np.empty(len(df), dtype=object)
    for name, (version, role) in arms.items():
        hit = ((df["version"] == version) & (df["arm"] == role)).to_numpy()
        wanted |= hit
        names[hit] = name
    df, names = df[wanted], names[wanted]
    reward = df["reward"].to_numpy(np.float64) if len(df) else np.array([])
    given = ~np.isnan(reward)
    use_reward = source == "reward" or (source == "auto" and bool(given.any()))
    ignored: dict[str, int] = {}
    if use_reward:
        value, kind, higher = reward, "reward", True
        present = given
        bad = present & ~np.isfinite(value)
        if bad.any():
            ignored["reward not a finite number"] = int(bad.sum())
        if binary:
            out = present & np.isfinite(value) & ((value < 0) | (value > 1))
            if out.any():
                ignored["reward outside [0, 1] (a binary bandit)"] = int(out.sum())
            bad |= out
        keep = present & ~bad
    else:
        actual = df["actual"].to_numpy(np.float64) if len(df) else np.array([])
        present = ~np.isnan(actual)
        if cfg.task == "classification" and "output.label" in df.columns:
            value = (df["output.label"].to_numpy(np.float64) == actual).astype(np.float64)
            kind, higher = "correct", True
        else:
            col = "output.prediction"
            pred = df[col].to_numpy(np.float64) if col in df.columns else np.full(len(df),
                                                                                  np.nan)
            value, kind, higher = np.abs(pred - actual), "abs_error", False
        bad = present & ~np.isfinite(value)
        if bad.any():
            ignored["outcome not a finite number"] = int(bad.sum())
        keep = present & ~bad
    values = {name: value[keep & (names == name)] for name in arms}
    return Outcomes(values, kind, higher, ignored, int((~present).sum()))
