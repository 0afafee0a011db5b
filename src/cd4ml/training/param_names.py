"""The parameters each model type takes: what a hyperparameter search may name.

scikit-learn: the estimator's signature (as :func:`cd4ml.training.learners._estimator`
checks at fit time). LightGBM: the signature of its scikit-learn API (``LGBMModel``) and
the documented core and learning-control parameters it passes on to the booster, listed
here so that checking a project does not import LightGBM (``tests/test_search_config.py``
checks the list against the installed signature). Both also take cd4ml's own
(:data:`~cd4ml.training.fitdata.OURS`). Baselines take none.

>>> "num_leaves" in allowed_params("lightgbm", "forecast")
True
>>> allowed_params("seasonal_naive", "forecast")
[]
"""

from __future__ import annotations

import inspect

from cd4ml.training.adapters import adapter_for
from cd4ml.training.fitdata import OURS

__all__ = ["allowed_params", "LIGHTGBM_SKLEARN", "LIGHTGBM_DOCUMENTED"]

#: ``lightgbm.LGBMModel.__init__``'s keyword parameters (LightGBM 4)
LIGHTGBM_SKLEARN = (
    "boosting_type", "num_leaves", "max_depth", "learning_rate", "n_estimators",
    "subsample_for_bin", "objective", "class_weight", "min_split_gain", "min_child_weight",
    "min_child_samples", "subsample", "subsample_freq", "colsample_bytree", "reg_alpha",
    "reg_lambda", "random_state", "n_jobs", "importance_type")

#: LightGBM's documented parameters (its Parameters page: core, learning control,
#: dataset, objective) under their main names, passed through ``**kwargs``
LIGHTGBM_DOCUMENTED = (
    "boosting", "num_iterations", "num_class", "min_data_in_leaf",
    "min_sum_hessian_in_leaf", "bagging_fraction", "bagging_freq", "bagging_seed",
    "pos_bagging_fraction", "neg_bagging_fraction", "feature_fraction",
    "feature_fraction_bynode", "feature_fraction_seed", "extra_trees", "extra_seed",
    "max_delta_step", "lambda_l1", "lambda_l2", "linear_lambda", "min_gain_to_split",
    "drop_rate", "max_drop", "skip_drop", "xgboost_dart_mode", "uniform_drop",
    "top_rate", "other_rate", "min_data_per_group", "max_cat_threshold", "cat_l2",
    "cat_smooth", "max_cat_to_onehot", "top_k", "monotone_constraints",
    "monotone_constraints_method", "monotone_penalty", "feature_contri",
    "forcedsplits_filename", "refit_decay_rate", "cegb_tradeoff", "cegb_penalty_split",
    "path_smooth", "interaction_constraints", "linear_tree", "max_bin", "min_data_in_bin",
    "bin_construct_sample_cnt", "use_missing", "zero_as_missing", "boost_from_average",
    "is_unbalance", "scale_pos_weight", "sigmoid", "reg_sqrt", "alpha", "fair_c",
    "poisson_max_delta_step", "tweedie_variance_power", "lambdarank_truncation_level",
    "num_threads", "seed", "deterministic", "force_row_wise", "force_col_wise",
    "verbosity", "early_stopping_round")


def allowed_params(type_: str, task: str) -> list[str]:
    """The parameter names ``type_`` takes for ``task``, sorted (empty for a baseline).

    Imports the scikit-learn estimator's module for a scikit-learn type, nothing for
    LightGBM or a baseline."""
    fit = adapter_for(type_, task, where="type").task_fit(task)
    if type_ == "lightgbm":
        names = {*LIGHTGBM_SKLEARN, *LIGHTGBM_DOCUMENTED}
    elif fit.estimator is not None:
        from cd4ml.registry.predictors import estimator_class

        names = set(inspect.signature(estimator_class(fit.estimator)).parameters)
    else:
        return []
    return sorted(names | OURS)
