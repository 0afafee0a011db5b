"""Fitting model adapters (LightGBM, scikit-learn, baselines) into predictors."""
