"""Each tool's drift scores against SciPy's on the same rows, outside any timing.

One definition per method (Evidently's, as cd4ml follows its rule), computed with SciPy
on the frames the tool got, missing values dropped:

- ``ks``: ``scipy.stats.ks_2samp(ref, cur).pvalue``;
- ``wasserstein``: ``scipy.stats.wasserstein_distance(ref, cur) / max(std(ref), 0.001)``
  (population std, as Evidently's normed Wasserstein);
- ``jensenshannon``: ``scipy.spatial.distance.jensenshannon(p, q)`` (natural log) of the
  two samples' frequencies over the union of their values. Evidently replaces an empty
  bin's 0 by 0.0001 before this; where a value is missing from one sample its score then
  differs from SciPy's plain one, and the row says so;
- ``chisquare``: ``scipy.stats.chisquare(f_obs=current counts, f_exp=reference shares x
  current rows)``, over the reference's values (Evidently's form);
- ``psi`` and ``z`` have no SciPy counterpart here: not checked.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["canonical", "scipy_score", "check_case", "TOLERANCE"]

TOLERANCE = 1e-6
_ALIASES = {"wasserstein": "wasserstein", "wassersteindistancenormed": "wasserstein",
            "normedwasserstein": "wasserstein", "jensenshannon": "jensenshannon",
            "jensenshannondistance": "jensenshannon", "js": "jensenshannon",
            "ks": "ks", "kolmogorovsmirnov": "ks", "chisquare": "chisquare",
            "chi2": "chisquare", "chisquared": "chisquare", "psi": "psi", "z": "z",
            "ztest": "z", "proportionztest": "z"}


def canonical(method: str | None) -> str | None:
    """One name per method across the tools' spellings (``jensen_shannon`` ->
    ``jensenshannon``, ``chi2`` -> ``chisquare``)."""
    if method is None:
        return None
    key = "".join(ch for ch in method.lower() if ch.isalnum())
    return _ALIASES.get(key, key)


def scipy_score(method: str, ref: pd.Series, cur: pd.Series) -> tuple[float | None, str]:
    """SciPy's score of ``method`` on two samples, and a note ("" when comparable)."""
    from scipy import stats
    from scipy.spatial import distance

    r, c = ref.dropna(), cur.dropna()
    if r.empty or c.empty:
        return None, "a sample has no values"
    if method == "ks":
        return float(stats.ks_2samp(r.to_numpy(float), c.to_numpy(float)).pvalue), ""
    if method == "wasserstein":
        rv, cv = r.to_numpy(float), c.to_numpy(float)
        return float(stats.wasserstein_distance(rv, cv) / max(np.std(rv), 0.001)), ""
    if method in ("jensenshannon", "chisquare"):
        rf, cf = r.value_counts(normalize=True), c.value_counts(normalize=True)
        if method == "chisquare":
            cc = c.value_counts().reindex(rf.index, fill_value=0)
            exp = rf * len(c)
            return float(stats.chisquare(cc.to_numpy(float), exp.to_numpy(float)).pvalue), ""
        keys = rf.index.union(cf.index)
        p, q = rf.reindex(keys, fill_value=0.0), cf.reindex(keys, fill_value=0.0)
        note = "" if (p > 0).all() and (q > 0).all() else "a value is absent from one sample"
        return float(distance.jensenshannon(p.to_numpy(), q.to_numpy())), note
    return None, f"no SciPy counterpart for {method}"


def check_case(frames: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
               runs: list[dict[str, Any]], score_of: Any) -> list[dict[str, Any]]:
    """Rows (tool, column, method, tool's score, SciPy's, |diff|, within 1e-6) for every
    column of every successful drift run; ``frames[tool]`` is the pair that tool got and
    ``score_of(run, column)`` gives (canonical method, score)."""
    out = []
    for run in runs:
        if run.get("error") or run.get("task") != "drift" or run["tool"] == "nannyml":
            continue  # NannyML scores chunks, not the whole window
        ref, cur = frames[run["tool"]]
        for col in run.get("columns", {}):
            method, score = score_of(run, col)
            if method is None or score is None or col not in ref:
                continue
            want, note = scipy_score(method, ref[col], cur[col])
            diff = None if want is None else abs(score - want)
            out.append({"tool": run["tool"], "case": run["case"], "size": run["size"],
                        "column": col, "method": method, "score": score, "scipy": want,
                        "abs_diff": diff, "within": None if diff is None
                        else bool(diff <= TOLERANCE), "note": note})
    return out
