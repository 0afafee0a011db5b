"""Feature definitions applied identically in training and serving."""

from cd4ml.features.compute import FeatureSpec, compute_features, spec_from_config
from cd4ml.features.panel import build_panel, panel_columns

__all__ = ["FeatureSpec", "compute_features", "spec_from_config", "build_panel", "panel_columns"]
