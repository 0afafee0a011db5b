"""Evidently 0.7.23 ``Report([DataDriftPreset()])`` on one frame pair (its own venv).

Timed: building both ``Dataset``s with an explicit ``DataDefinition`` (the benchmark's
column types) and ``Report.run`` with the preset's defaults (its method chosen per column by
type and size, its thresholds, drift share 0.5). Read afterwards from ``Snapshot.dict()``:
each ``ValueDrift``'s method, threshold and score. The 0.7 report has no tests by default,
so the verdict is the rule of Evidently's own stat-test functions (a p-value below the
threshold, ``<=`` for K-S; a distance at or above it), written out in ``RULES``.

    python peer_evidently.py JOB.json     # prints one line: @@{...}
"""

from __future__ import annotations

import time
from typing import Any

from _peer import Meter, load, measured, num, preload, run

#: Evidently's display name -> (our name, is a p-value, verdict rule)
RULES: dict[str, tuple[str, bool, str]] = {
    "Wasserstein distance (normed)": ("wasserstein", False, ">="),
    "Jensen-Shannon distance": ("jensen_shannon", False, ">="),
    "PSI": ("psi", False, ">="),
    "Hellinger distance": ("hellinger", False, ">="),
    "Kullback-Leibler divergence": ("kl_div", False, ">="),
    "Energy-distance": ("energy", False, ">"),
    "K-S p_value": ("ks", True, "<="),
    "chi-square p_value": ("chi2", True, "<"),
    "Z-test p_value": ("z", True, "<"),
    "Anderson-Darling": ("anderson", True, "<"),
    "Cramer-von Mises": ("cramer_von_mises", True, "<="),
    "Fisher's Exact test": ("fisher_exact", True, "<"),
    "Mann-Whitney U-rank test": ("mannw", True, "<"),
    "Total-Variation-Distance": ("tvd", True, "<"),
    "t_test": ("t_test", True, "<"),
    "g_test": ("g_test", True, "<"),
    "Epps-Singleton": ("es", True, "<"),
}


def _verdict(score: float | None, threshold: float | None, rule: str) -> bool | None:
    if score is None or threshold is None:
        return None
    return {">=": score >= threshold, ">": score > threshold, "<=": score <= threshold,
            "<": score < threshold}[rule]


def drift(j: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    from importlib.metadata import version

    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    import_s = preload(t0)

    ref, cur = load(j)
    with Meter() as m:
        definition = DataDefinition(numerical_columns=j["numerical"],
                                    categorical_columns=j["categorical"])
        reference = Dataset.from_pandas(ref, data_definition=definition)
        current = Dataset.from_pandas(cur, data_definition=definition)
        snapshot = Report([DataDriftPreset()]).run(current, reference)
    doc = snapshot.dict()
    columns: dict[str, Any] = {}
    share = None
    for metric in doc["metrics"]:
        cfg = metric["config"]
        if cfg["type"].endswith("DriftedColumnsCount"):
            share = num(metric["value"]["share"])
            drift_share = cfg.get("drift_share", 0.5)
        elif cfg["type"].endswith("ValueDrift"):
            label = cfg.get("method")
            name, is_p, rule = RULES.get(label, (label, False, ""))
            score, threshold = num(metric["value"]), num(cfg.get("threshold"))
            columns[cfg["column"]] = {
                "method": name, "method_label": label,
                "statistic": None if is_p else score, "p_value": score if is_p else None,
                "threshold": threshold,
                "drifted": _verdict(score, threshold, rule) if rule else None}
    return {"version": version("evidently"), **measured(m), "import_s": import_s,
            "rows": {"reference": len(ref), "current": len(cur)}, "columns": columns,
            "share_drifted": share,
            "dataset_drifted": None if share is None else share >= drift_share}


if __name__ == "__main__":
    run("evidently", drift)
