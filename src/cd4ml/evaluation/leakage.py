"""Leakage warnings: a column that gives the answer away, or one that names each row.

The classic failure is a feature that alone predicts the target (a hospital's name in a
diagnosis model, a refund flag in a churn model): the model scores well on validation
and fails in production, where the column is not known yet. :func:`find_leaks` fits a
one-feature model per column on the fit rows and scores it on the validation rows; a
column whose figure passes the threshold (ROC AUC > ``max_auc`` for a classifier, R² >
``max_r2`` for a regressor or a forecast) is a :class:`Leak` of kind
``predicts_target``. A column of integers or strings with a distinct value in every row
is a :class:`Leak` of kind ``identifier``: a row id, not a measurement (floats are
measurements, so a float column is never an identifier).

The one-feature model is scikit-learn's decision tree (at most :data:`MAX_LEAVES`
leaves of at least :data:`MIN_LEAF` rows, seeded) on that column alone:

- numbers as they are (-inf and +inf as values below and above the finite ones), a
  missing value as its own value: at each split the missing values go to the side that fits
  them best, and a split may set them apart from all the others (scikit-learn's trees);
- anything else (strings, bools, categories, dates) as categories, each encoded by its
  fit-row target mean (scikit-learn's ``TargetEncoder``: one column per class for a
  multiclass target), a missing value as a category of its own and a category never
  seen in the fit rows as the overall mean; so the tree can isolate categories.

ROC AUC is binary (the second of the sorted classes is positive) or the macro average
one-vs-rest over the classes with validation rows of the class and of the others. A
column that cannot be scored (constant or all missing in the fit rows; fit rows of one
class, or validation rows of one class or of a constant target) is not flagged. This
needs scikit-learn (``cd4ml[ml]``).

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> y = rng.integers(0, 2, 2_000)
>>> frame = pd.DataFrame({"noise": rng.normal(size=2_000), "copy": y,
...                       "row": np.arange(2_000), "y": y})
>>> leaks = find_leaks(frame, target="y", task="classification",
...                    columns=["noise", "copy", "row"], validation=np.arange(2_000) >= 1_500)
>>> for leak in leaks:
...     print(leak.message())
column 'copy' alone predicts the target: ROC AUC 1.000 on validation (> 0.98)
column 'row' looks like an identifier: a distinct value in each of 2,000 rows
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from cd4ml.errors import MissingExtraError

__all__ = ["Leak", "find_leaks", "TASKS", "MAX_LEAVES", "MIN_LEAF", "MIN_ID_ROWS",
           "EXACT_R2", "MIN_SHARE"]

#: the tasks whose targets are scored: by ROC AUC (classification) or R² (the others)
TASKS = ("classification", "regression", "forecast")
#: the one-feature tree's leaves at most: enough to follow a monotone relation closely
MAX_LEAVES = 32
#: rows a leaf of the one-feature tree holds at least (fewer when the fit rows are few)
MIN_LEAF = 20
#: rows a frame needs before a column distinct in every row is called an identifier
#: (in a few dozen rows, distinct integers are as likely a count or a code)
MIN_ID_ROWS = 100
#: a linear model on the numeric columns above this validation R² (regression,
#: forecast) is an exact relation, not a model: the columns carrying it are findings
EXACT_R2 = 0.999
#: ... each column whose coefficient times its standard deviation is at least this share
#: of the target's standard deviation
MIN_SHARE = 0.05
_METRIC_NAMES = {"roc_auc": "ROC AUC", "r2": "R²"}
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Leak:
    """One finding: ``column`` predicts the target alone (``metric`` and ``value``: the
    one-feature model's validation figure, above ``threshold``) or looks like an
    identifier (``metric``, ``value`` and ``threshold`` None). ``rows``: the validation
    rows scored, or the rows whose values are all distinct."""

    column: str
    kind: Literal["predicts_target", "identifier", "combination"]
    metric: str | None
    value: float | None
    threshold: float | None = None
    rows: int | None = None
    #: kind "combination": every column of the exact linear relation, this one included
    together: tuple[str, ...] = ()

    def message(self) -> str:
        """One line naming the column and the figure."""
        if self.kind == "identifier":
            rows = "every row" if self.rows is None else f"each of {self.rows:,} rows"
            return (f"column {self.column!r} looks like an identifier: a distinct value "
                    f"in {rows}")
        name = _METRIC_NAMES.get(str(self.metric), str(self.metric))
        above = "" if self.threshold is None else f" (> {self.threshold:g})"
        if self.kind == "combination":
            others = ", ".join(repr(c) for c in self.together if c != self.column)
            return (f"column {self.column!r} with {others or 'the others'} gives the target "
                    f"exactly: a linear model on the numeric columns scores {name} "
                    f"{_figure(self.value, self.threshold)} on validation{above}")
        return (f"column {self.column!r} alone predicts the target: {name} "
                f"{_figure(self.value, self.threshold)} on validation{above}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the fields and the message."""
        return {"column": self.column, "kind": self.kind, "metric": self.metric,
                "value": self.value, "threshold": self.threshold, "rows": self.rows,
                "together": list(self.together), "message": self.message()}


def _figure(value: float | None, threshold: float | None) -> str:
    """``value`` with 3 decimals, or as many more (up to 6) as it takes not to print it
    equal to ``threshold`` (0.9804 against 0.98 reads 0.9804, not 0.980)."""
    if value is None:
        return "n/a"
    digits = 3
    while threshold is not None and digits < 6 and round(value, digits) <= threshold:
        digits += 1
    return f"{value:.{digits}f}"


def find_leaks(frame: pd.DataFrame, *, target: str, task: str, columns: list[str],
               validation: np.ndarray, max_auc: float = 0.98, max_r2: float = 0.95,
               max_rows: int = 50_000, seed: int = 0) -> list[Leak]:
    """The columns of ``frame`` that alone predict ``target``, or look like identifiers.

    task: 'classification' | 'regression' | 'forecast' (forecast scored like
    regression, by R²); validation: a boolean mask over frame's rows (True = validation,
    False = fit rows); rows with a missing target are ignored. At most ``max_rows`` fit
    rows and ``max_rows`` validation rows are used (a sample seeded by ``seed``); the
    identifier check looks at every row with a known target. Findings come in the order
    of ``columns``, a column's identifier finding first.
    """
    mask = _check_args(frame, target=target, task=task, columns=columns,
                       validation=validation, max_auc=max_auc, max_r2=max_r2,
                       max_rows=max_rows)
    known = frame[target].notna().to_numpy()
    fit_rows, val_rows = _sample(~mask & known, mask & known, max_rows, seed)
    classification = task == "classification"
    score = _Scorer(frame[target], fit_rows, val_rows, classification, seed)
    threshold = max_auc if classification else max_r2
    out: list[Leak] = []
    for col in columns:
        values = frame[col]
        rows = _distinct_rows(values[known])
        if rows is not None:
            out.append(Leak(col, "identifier", None, None, rows=rows))
        value = score(values)
        if value is not None and value > threshold:
            out.append(Leak(col, "predicts_target", score.metric, value, threshold=threshold,
                            rows=len(val_rows)))
    if not classification:
        alone = {lk.column for lk in out}
        out += _exact_combination(frame, target, [c for c in columns if c not in alone],
                                  fit_rows, val_rows)
    return out


def _exact_combination(frame: pd.DataFrame, target: str, columns: list[str],
                       fit_rows: np.ndarray, val_rows: np.ndarray) -> list[Leak]:
    """Numeric columns that together give a numeric target exactly (the bike sharing
    counts: ``casual + registered = cnt``), which no column alone does.

    scikit-learn's least squares on the numeric columns (missing values: the fit rows'
    median), fitted on the fit rows; when its validation R² exceeds :data:`EXACT_R2`, the
    columns that carry the fit — each whose coefficient times its standard deviation is
    at least :data:`MIN_SHARE` of the target's — are findings, one per column, naming the
    others."""
    nums = [c for c in columns if _is_number(frame[c])]
    if not nums or len(fit_rows) <= len(nums) + 1 or len(val_rows) < 2:
        return []
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    X = frame[nums].to_numpy(dtype=np.float64, na_value=np.nan)
    X = np.where(np.isfinite(X), X, np.nan)
    med = pd.DataFrame(X[fit_rows]).median().fillna(0.0).to_numpy()  # all missing: 0
    X = np.where(np.isnan(X), med, X)
    y = frame[target].to_numpy(dtype=np.float64, na_value=np.nan)
    y_sd = float(np.std(y[fit_rows]))
    if y_sd == 0 or np.std(y[val_rows]) == 0:
        return []
    lin = LinearRegression().fit(X[fit_rows], y[fit_rows])
    r2 = float(r2_score(y[val_rows], lin.predict(X[val_rows])))
    if r2 <= EXACT_R2:
        return []
    share = np.abs(lin.coef_) * np.std(X[fit_rows], axis=0) / y_sd
    carry = tuple(c for c, sh in zip(nums, share) if sh >= MIN_SHARE)
    return [Leak(c, "combination", "r2", r2, threshold=EXACT_R2, rows=len(val_rows),
                 together=carry) for c in carry]


def _check_args(frame: pd.DataFrame, *, target: str, task: str, columns: list[str],
                validation: np.ndarray, max_auc: float, max_r2: float,
                max_rows: int) -> np.ndarray:
    """The validation mask as a bool array; a ValueError naming the first bad argument."""
    if task not in TASKS:
        raise ValueError(f"task == {task!r}, must be one of {list(TASKS)}")
    for name in [target, *columns]:
        if name not in frame.columns:
            raise ValueError(f"column {name!r} is not in the frame; columns: "
                             f"{', '.join(map(str, frame.columns))}")
    if target in columns:
        raise ValueError(f"columns holds the target {target!r}: it predicts itself")
    y = frame[target]
    if task != "classification" and (pd.api.types.is_bool_dtype(y.dtype)
                                      or not pd.api.types.is_numeric_dtype(y.dtype)):
        raise ValueError(f"target {target!r} holds {y.dtype} values; a {task} target is "
                         f"numeric (did you mean classification?)")
    if task != "classification" and np.isinf(y.to_numpy(dtype=np.float64,
                                                     na_value=np.nan)).any():
        raise ValueError(f"target {target!r} holds infinite values; drop or fix those rows")
    if not 0.5 < max_auc <= 1:
        raise ValueError(f"max_auc == {max_auc!r}, must be in (0.5, 1]")
    if not 0 < max_r2 <= 1:
        raise ValueError(f"max_r2 == {max_r2!r}, must be in (0, 1]")
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"max_rows == {max_rows!r}, must be an integer >= 1")
    mask = np.asarray(validation)
    if mask.dtype != np.bool_ or mask.shape != (len(frame),):
        raise ValueError(f"validation is {mask.dtype} of shape {mask.shape}; expected a "
                         f"boolean mask of the frame's {len(frame):,} rows")
    known = frame[target].notna().to_numpy()
    for rows, what in ((~mask & known, "fit (validation False)"),
                       (mask & known, "validation (validation True)")):
        if not rows.any():
            raise ValueError(f"no {what} rows with a known target {target!r}: a "
                             f"one-feature model needs rows to fit and rows to score")
    return mask


def _sample(fit: np.ndarray, val: np.ndarray, max_rows: int, seed: int,
            ) -> tuple[np.ndarray, np.ndarray]:
    """The positions of at most ``max_rows`` fit rows and of at most ``max_rows``
    validation rows, in frame order (a seeded sample where there are more)."""
    rng = np.random.default_rng(seed)
    out = []
    for m in (fit, val):
        rows = np.flatnonzero(m)
        if len(rows) > max_rows:
            rows = np.sort(rng.choice(rows, size=max_rows, replace=False))
        out.append(rows)
    return out[0], out[1]


def _distinct_rows(values: pd.Series) -> int | None:
    """The number of rows when ``values`` are integers or strings, present and distinct
    in each of at least :data:`MIN_ID_ROWS` rows; else None."""
    whole = (pd.api.types.is_integer_dtype(values.dtype)
             and not pd.api.types.is_bool_dtype(values.dtype))
    text = pd.api.types.is_string_dtype(values)  # object: when every value is a string
    if not (whole or text) or len(values) < MIN_ID_ROWS or values.isna().any():
        return None
    return len(values) if values.nunique() == len(values) else None


def _is_number(values: pd.Series) -> bool:
    """Thresholded as numbers rather than encoded as categories (bools are categories)."""
    dtype = values.dtype
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _finite_ends(a: np.ndarray) -> np.ndarray:
    """``a`` with -inf and +inf as values of their own below and above the finite ones,
    all within float32's range, where the tree works (missing values stay missing)."""
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    step = max(1.0, abs(lo), abs(hi))  # apart from lo and hi even in float32
    a = np.where(np.isposinf(a), hi + step, np.where(np.isneginf(a), lo - step, a))
    return np.clip(a, -_F32_MAX, _F32_MAX)


def _min_leaf(n_fit: int) -> int:
    """:data:`MIN_LEAF` rows, or a twentieth of the fit rows when that is fewer."""
    return min(MIN_LEAF, max(1, n_fit // 20))


class _Scorer:
    """The validation figure of a one-feature model, for one target and one sample of
    fit and validation rows (positions)."""

    def __init__(self, target: pd.Series, fit_rows: np.ndarray, val_rows: np.ndarray,
                 classification: bool, seed: int) -> None:
        self.fit_rows, self.val_rows, self.seed = fit_rows, val_rows, seed
        self.classification = classification
        self.metric = "roc_auc" if classification else "r2"
        y = target.iloc[np.concatenate([fit_rows, val_rows])].reset_index(drop=True)
        if classification:
            codes, classes = pd.factorize(y, sort=True)
            self.n_classes = len(classes)
            y_all = codes.astype(np.int64)
        else:
            y_all = pd.to_numeric(y).to_numpy(dtype=np.float64)
        self.y_fit, self.y_val = y_all[:len(fit_rows)], y_all[len(fit_rows):]
        #: whether a figure exists: fit rows of two classes or more (a classifier), a
        #: target that varies in the validation rows (R² of a constant is undefined)
        self.defined = (len(np.unique(self.y_fit)) >= 2 if classification
                        else bool(np.ptp(self.y_val) > 0))

    def __call__(self, values: pd.Series) -> float | None:
        """The figure of ``values`` alone, or None where it cannot be scored."""
        x = values.iloc[np.concatenate([self.fit_rows, self.val_rows])].reset_index(drop=True)
        n_fit = len(self.fit_rows)
        if not self.defined or x.iloc[:n_fit].nunique(dropna=False) < 2:
            return None  # no figure, or nothing to learn (constant or all missing)
        X_fit, X_val = self._encode(x, n_fit)
        try:
            from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
        except ImportError:
            raise MissingExtraError("the leakage check", "ml", "scikit-learn") from None
        kind = DecisionTreeClassifier if self.classification else DecisionTreeRegressor
        tree = kind(max_leaf_nodes=MAX_LEAVES, min_samples_leaf=_min_leaf(n_fit),
                    random_state=self.seed).fit(X_fit, self.y_fit)
        if self.classification:
            return self._auc(tree.predict_proba(X_val), tree.classes_)
        from sklearn.metrics import r2_score

        return float(r2_score(self.y_val, tree.predict(X_val)))

    def _encode(self, x: pd.Series, n_fit: int) -> tuple[np.ndarray, np.ndarray]:
        """The column as the tree's input (fit rows, validation rows); see the module."""
        if _is_number(x):
            a = _finite_ends(x.to_numpy(dtype=np.float64, na_value=np.nan))
            return a[:n_fit, None], a[n_fit:, None]
        from sklearn.preprocessing import TargetEncoder

        cats = x.astype(str).to_numpy(dtype=object)
        cats[x.isna().to_numpy()] = np.nan  # missing: one category (not "nan", not None)
        cats = cats[:, None]
        target_type = ("continuous" if not self.classification
                       else "binary" if len(np.unique(self.y_fit)) == 2 else "multiclass")
        enc = TargetEncoder(target_type=target_type, random_state=self.seed)
        enc.fit(cats[:n_fit], self.y_fit)  # one value per category, fitted on fit rows
        return enc.transform(cats[:n_fit]), enc.transform(cats[n_fit:])

    def _auc(self, proba: np.ndarray, fitted: np.ndarray) -> float | None:
        """Binary ROC AUC, or the macro one-vs-rest average; None when undefined."""
        from sklearn.metrics import roc_auc_score

        full = np.zeros((len(self.y_val), self.n_classes))
        full[:, fitted] = proba  # a class never in the fit rows: probability 0
        if self.n_classes == 2:
            if len(np.unique(self.y_val)) < 2:
                return None
            return float(roc_auc_score(self.y_val, full[:, 1]))
        scores = [roc_auc_score(self.y_val == c, full[:, c]) for c in range(self.n_classes)
                  if 0 < (self.y_val == c).sum() < len(self.y_val)]
        return float(np.mean(scores)) if scores else None
