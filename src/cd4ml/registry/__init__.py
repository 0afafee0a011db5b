"""Model bundles, predictors (load + predict, no pickle) and loading registered versions."""
