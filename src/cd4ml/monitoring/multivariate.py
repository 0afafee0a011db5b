"""Multivariate drift by PCA reconstruction error (as NannyML's data reconstruction drift).

At registration the training inputs are encoded (a category by its frequency in
training, a missing value by the column's mean), standardised, and a PCA keeping 65 % of
the variance is fitted (scikit-learn). A window's score is the mean Euclidean distance
between its standardised rows and their reconstruction from the components: a change in
how the columns move together raises it even when every column alone looks stable. The
reference's own chunks give the normal range: the window drifts when its error leaves
``mean ± 3 std`` of the reference chunks' errors.

Everything fitted is stored as plain numbers in the reference profile (no pickle).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Reconstruction", "VARIANCE", "CHUNK_ROWS"]

#: The share of the variance the components keep (NannyML's default).
VARIANCE = 0.65
#: Rows per reference chunk for the normal range of the error.
CHUNK_ROWS = 5000


@dataclass
class Reconstruction:
    columns: list[str]
    frequencies: dict[str, dict[str, float]]  #: categorical column -> label -> share
    means: list[float]  #: per column, after encoding (also what fills a missing value)
    scales: list[float]
    center: list[float]  #: the PCA's mean
    components: list[list[float]]
    lower: float
    upper: float
    reference_error: float

    @classmethod
    def fit(cls, frame: pd.DataFrame, kinds: Mapping[str, str], *,
            chunk_rows: int = CHUNK_ROWS, seed: int = 0) -> Reconstruction:
        from sklearn.decomposition import PCA

        columns = list(frame.columns)
        freqs = {}
        for c in columns:
            if kinds.get(c) == "categorical":
                vc = frame[c].value_counts(normalize=True, dropna=True)
                freqs[c] = {str(k): float(v) for k, v in vc.items()}
        raw = _encode(frame, columns, freqs)
        means = np.nanmean(raw, axis=0)
        means = np.where(np.isfinite(means), means, 0.0)
        filled = np.where(np.isnan(raw), means, raw)
        scales = filled.std(axis=0)
        scales = np.where(scales > 0, scales, 1.0)
        Z = (filled - means) / scales
        pca = PCA(n_components=VARIANCE, svd_solver="covariance_eigh", random_state=seed).fit(Z)
        out = cls(columns, freqs, means.tolist(), scales.tolist(), pca.mean_.tolist(),
                  pca.components_.tolist(), 0.0, 0.0, 0.0)
        errors = [out.error(frame.iloc[i:i + chunk_rows])
                  for i in range(0, len(frame), chunk_rows)
                  if len(frame.iloc[i:i + chunk_rows]) == chunk_rows] or [out.error(frame)]
        mu, sd = float(np.mean(errors)), float(np.std(errors))
        out.lower, out.upper, out.reference_error = mu - 3 * sd, mu + 3 * sd, mu
        return out

    def _standardised(self, frame: pd.DataFrame) -> np.ndarray:
        raw = _encode(frame, self.columns, self.frequencies)
        means = np.asarray(self.means)
        return (np.where(np.isnan(raw), means, raw) - means) / np.asarray(self.scales)

    def errors(self, frame: pd.DataFrame) -> np.ndarray:
        """Each row's reconstruction error (Euclidean, in standardised units)."""
        Z = self._standardised(frame)
        C, m = np.asarray(self.components), np.asarray(self.center)
        back = (Z - m) @ C.T @ C + m
        return np.sqrt(((Z - back) ** 2).sum(axis=1))

    def error(self, frame: pd.DataFrame) -> float:
        return float(self.errors(frame).mean()) if len(frame) else float("nan")

    def judge(self, frame: pd.DataFrame, *, min_rows: int = 30) -> dict[str, Any]:
        return self.judge_errors(self.errors(frame), min_rows=min_rows)

    def judge_errors(self, errors: np.ndarray, *, min_rows: int = 30) -> dict[str, Any]:
        """:meth:`judge` of a window whose rows' errors (:meth:`errors`) are known."""
        errors = np.asarray(errors, dtype=np.float64)
        if len(errors) < min_rows:
            return {"state": "insufficient", "rows": len(errors), "error": None,
                    "message": f"{len(errors)} rows, fewer than min_rows ({min_rows})"}
        e = float(errors.mean())
        out = not (self.lower <= e <= self.upper)
        return {"state": "drifted" if out else "ok", "drifted": out, "rows": len(errors),
                "error": e, "lower": self.lower, "upper": self.upper,
                "reference_error": self.reference_error,
                "components": len(self.components)}

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Reconstruction:
        return cls(**dict(d))


def _encode(frame: pd.DataFrame, columns: list[str],
            freqs: Mapping[str, Mapping[str, float]]) -> np.ndarray:
    """Numbers as floats, categories by their training frequency (unseen: 0), NaN for
    missing or absent."""
    cols = []
    for c in columns:
        s = frame[c] if c in frame.columns else pd.Series(np.nan, index=frame.index)
        if c in freqs:  # by category: the text of each distinct value looked up once
            cat = pd.Categorical(s)
            table = np.array([freqs[c].get(str(v), 0.0) for v in cat.categories] + [np.nan],
                             dtype=np.float64)  # unseen: frequency 0; code -1 (missing): NaN
            cols.append(table[cat.codes])
        else:
            cols.append(pd.to_numeric(s, errors="coerce").to_numpy(np.float64))
    return np.column_stack(cols) if cols else np.empty((len(frame), 0))
