"""Monitoring: drift of inputs and outputs against a model version's reference profile.

Reads the prediction log and reference profiles, never a model's internals; it and
``cd4ml.serving`` do not import each other (an import-linter contract in pyproject.toml).

- :mod:`~cd4ml.monitoring.summary` — a column as exact, mergeable counts of its values;
- :mod:`~cd4ml.monitoring.stats` — the statistics (KS, Wasserstein, chi-square,
  Jensen–Shannon, PSI, z-test), computed on summaries, equal to SciPy's on the rows;
- :mod:`~cd4ml.monitoring.methods` — the methods by name and the default choice;
- :mod:`~cd4ml.monitoring.drift` — per-column findings and the dataset's verdict;
- :mod:`~cd4ml.monitoring.reference` — the reference profile stored per model version.
"""

from cd4ml.monitoring.drift import ColumnDrift, ColumnRule, DriftReport, DriftSettings
from cd4ml.monitoring.methods import METHODS, default_method
from cd4ml.monitoring.reference import (Reference, ReferenceLookup, compare, infer_kinds,
                                        reference_of)
from cd4ml.monitoring.summary import ColumnSummary

__all__ = ["Reference", "compare", "DriftSettings", "ColumnRule", "DriftReport",
           "ColumnDrift", "ColumnSummary", "METHODS", "default_method", "infer_kinds",
           "reference_of", "ReferenceLookup"]
