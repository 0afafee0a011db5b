"""Leakage warnings (cd4ml.evaluation.leakage) on real data: ACS employment with columns
derived from the target, scikit-learn's diabetes and wine sets, Walmart's weekly sales.

The figures are checked against independent computations: a binary column's one-feature
model is its values' fit-row target shares (pandas), ROC AUC is the Mann-Whitney U
statistic (scipy), R² is 1 - SS_res / SS_tot (numpy).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from cd4ml.evaluation.leakage import MAX_LEAVES, MIN_LEAF, Leak, find_leaks

ACS_INPUTS = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
              "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U of the positives' scores over the negatives'."""
    pos, neg = score[y == 1], score[y == 0]
    return float(mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    return float(1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())


@pytest.fixture(scope="module")
def acs_2015(acs_years: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The 68,785 ACS rows of 2015 with columns derived from ``employed``: 1 % of it
    flipped (``employed_copy``, and as text ``status``), hours worked (40 a week when
    employed, plus noise), and a row number; a seeded 20 % validation share."""
    d = acs_years[acs_years.year == 2015].reset_index(drop=True)
    rng = np.random.default_rng(0)
    y = d["employed"].to_numpy()
    d["employed_copy"] = np.where(rng.random(len(d)) < 0.01, 1 - y, y)
    d["status"] = np.where(d["employed_copy"] == 1, "working", "not working")
    d["hours"] = y * 40 + rng.normal(0, 8, len(d))
    d["row_no"] = np.arange(len(d))
    return d, rng.random(len(d)) < 0.2


@pytest.fixture(scope="module")
def acs_leaks(acs_2015: tuple[pd.DataFrame, np.ndarray]) -> dict[tuple[str, str], Leak]:
    """Every column's findings, fitted on all 55k fit rows (no sample), by (column, kind)."""
    d, val = acs_2015
    cols = [*ACS_INPUTS, "employed_copy", "status", "hours", "row_no", "id"]
    leaks = find_leaks(d, target="employed", task="classification", columns=cols,
                       validation=val, max_rows=len(d))
    return {(leak.column, leak.kind): leak for leak in leaks}


def test_acs_columns_derived_from_the_target_are_flagged(acs_leaks) -> None:
    assert set(acs_leaks) == {("employed_copy", "predicts_target"),
                              ("status", "predicts_target"), ("hours", "predicts_target"),
                              ("row_no", "identifier"), ("id", "identifier")}
    for col in ("employed_copy", "status", "hours"):
        leak = acs_leaks[(col, "predicts_target")]
        assert leak.metric == "roc_auc" and leak.value > 0.98 and leak.threshold == 0.98
    # 1 % flipped: the AUC of a perfect copy less the flips
    assert acs_leaks[("employed_copy", "predicts_target")].value == pytest.approx(0.99,
                                                                                   abs=0.003)
    ident = acs_leaks[("row_no", "identifier")]
    assert (ident.metric, ident.value, ident.rows) == (None, None, 68_785)
    assert ident.message() == ("column 'row_no' looks like an identifier: a distinct value "
                               "in each of 68,785 rows")


def test_acs_binary_figures_match_the_fit_row_shares(acs_2015, acs_leaks) -> None:
    """A column of two values (a number or text): the tree is its fit-row target shares."""
    d, val = acs_2015
    fit, y_val = d[~val], d.loc[val, "employed"].to_numpy()
    for col in ("employed_copy", "status"):
        share = fit.groupby(col)["employed"].mean()
        score = d.loc[val, col].map(share).to_numpy()
        assert acs_leaks[(col, "predicts_target")].value == pytest.approx(
            _auc(y_val, score), abs=1e-12)
        assert acs_leaks[(col, "predicts_target")].rows == int(val.sum())


def test_acs_continuous_figure_matches_a_tree_fitted_by_hand(acs_2015, acs_leaks) -> None:
    from sklearn.tree import DecisionTreeClassifier

    d, val = acs_2015
    x, y = d[["hours"]].to_numpy(), d["employed"].to_numpy()
    tree = DecisionTreeClassifier(max_leaf_nodes=MAX_LEAVES, min_samples_leaf=MIN_LEAF,
                                  random_state=0).fit(x[~val], y[~val])
    expected = _auc(y[val], tree.predict_proba(x[val])[:, 1])
    assert acs_leaks[("hours", "predicts_target")].value == pytest.approx(expected, abs=1e-12)


def test_acs_sampled_and_timed(acs_2015) -> None:
    """The default sample (50,000 fit rows): the same findings, seeded, in about a second."""
    import time

    d, val = acs_2015
    cols = [*ACS_INPUTS, "employed_copy", "hours", "row_no"]
    find_leaks(d.head(500), target="employed", task="classification", columns=["AGEP"],
               validation=val[:500])  # scikit-learn imported before the clock starts
    t0 = time.perf_counter()
    first = find_leaks(d, target="employed", task="classification", columns=cols,
                       validation=val)
    seconds = time.perf_counter() - t0
    again = find_leaks(d, target="employed", task="classification", columns=cols,
                       validation=val)
    assert first == again
    assert [(x.column, x.kind) for x in first] == [
        ("employed_copy", "predicts_target"), ("hours", "predicts_target"),
        ("row_no", "identifier")]
    assert seconds < 10, f"{seconds:.1f} s on the 2015 rows"  # ~0.3 s alone on 2 cores


def test_missing_values_are_a_value_of_their_own(acs_2015) -> None:
    """Hours known only for those employed: missing says 'not employed'; missing targets
    are ignored (also by the identifier check)."""
    d, val = acs_2015
    d = d.head(20_000).copy()
    d["hours_reported"] = np.where(d["employed"] == 1, 40.0, np.nan)
    d["employer"] = np.where(d["employed"] == 1, "acme", None)
    d.loc[d.index[::10], "employed"] = np.nan
    leaks = find_leaks(d, target="employed", task="classification",
                       columns=["hours_reported", "employer", "row_no"],
                       validation=val[:20_000])
    assert [(x.column, x.kind, x.value) for x in leaks] == [
        ("hours_reported", "predicts_target", 1.0), ("employer", "predicts_target", 1.0),
        ("row_no", "identifier", None)]
    assert leaks[2].rows == 18_000


def test_infinities_are_the_ends_of_the_scale(acs_2015) -> None:
    d, val = acs_2015
    d = d.head(5_000).assign(
        odds=lambda f: np.where(f["employed"] == 1, np.inf, -np.inf))
    (leak,) = find_leaks(d, target="employed", task="classification", columns=["odds"],
                         validation=val[:5_000])
    assert (leak.column, leak.value) == ("odds", 1.0)


def test_columns_that_cannot_be_scored_are_not_flagged(acs_2015) -> None:
    d, val = acs_2015
    d = d.head(5_000).assign(constant=7, empty=np.nan, measured=np.arange(5_000) + 0.5)
    args = {"columns": ["constant", "empty", "measured", "employed_copy"],
            "validation": val[:5_000]}
    assert [x.column for x in find_leaks(d, target="employed", task="classification",
                                         **args)] == ["employed_copy"]
    one_class = d.assign(employed=np.where(val[:5_000], d["employed"], 1))  # fit rows: 1
    assert find_leaks(one_class, target="employed", task="classification", **args) == []
    flat = d.assign(AGEP=np.where(val[:5_000], 40.0, d["AGEP"]))  # R² of a constant
    assert find_leaks(flat, target="AGEP", task="regression", **args) == []


def test_regression_on_diabetes() -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.tree import DecisionTreeRegressor

    d = load_diabetes(as_frame=True).frame
    rng = np.random.default_rng(0)
    d["target_x2"] = d["target"] * 2 + rng.normal(0, 0.2 * d["target"].std(), len(d))
    val = rng.random(len(d)) < 0.25
    inputs = [c for c in d.columns if c != "target"]
    for task in ("regression", "forecast"):
        leaks = find_leaks(d, target="target", task=task, columns=inputs, validation=val)
        assert [(x.column, x.metric) for x in leaks] == [("target_x2", "r2")]
    n_fit = int((~val).sum())  # 331 rows: leaves of at least 16
    x, y = d[["target_x2"]].to_numpy(), d["target"].to_numpy()
    tree = DecisionTreeRegressor(max_leaf_nodes=MAX_LEAVES,
                                 min_samples_leaf=min(MIN_LEAF, n_fit // 20),
                                 random_state=0).fit(x[~val], y[~val])
    expected = _r2(y[val], tree.predict(x[val]))
    assert expected > 0.95
    assert leaks[0].value == pytest.approx(expected, abs=1e-12)
    assert leaks[0].message() == (f"column 'target_x2' alone predicts the target: R² "
                                  f"{expected:.3f} on validation (> 0.95)")


def test_columns_that_add_up_to_the_target_are_flagged_together() -> None:
    """The bike sharing leak (casual + registered = cnt) on real data: the diabetes
    target split into two parts, neither of which predicts it alone."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes(as_frame=True).frame
    rng = np.random.default_rng(1)
    d["part_a"] = (d["target"] * rng.uniform(0.3, 0.7, len(d))).round(1)
    d["part_b"] = d["target"] - d["part_a"]
    val = rng.random(len(d)) < 0.25
    inputs = [c for c in d.columns if c != "target"]
    leaks = find_leaks(d, target="target", task="regression", columns=inputs, validation=val)
    assert [(x.column, x.kind, x.together) for x in leaks] == [
        ("part_a", "combination", ("part_a", "part_b")),
        ("part_b", "combination", ("part_a", "part_b"))]
    X = np.column_stack([np.ones(len(d)), d[inputs].to_numpy()])  # numpy's least squares
    coef = np.linalg.lstsq(X[~val], d["target"].to_numpy()[~val], rcond=None)[0]
    assert leaks[0].value == pytest.approx(_r2(d["target"].to_numpy()[val], X[val] @ coef),
                                           abs=1e-9)
    assert leaks[0].message() == ("column 'part_a' with 'part_b' gives the target exactly: a "
                                  "linear model on the numeric columns scores R² 1.000 on "
                                  "validation (> 0.999)")
    real = [c for c in inputs if not c.startswith("part")]
    assert find_leaks(d, target="target", task="regression", columns=real,
                      validation=val) == []  # the ten real columns: R² about 0.5


def test_regression_on_walmart(full_walmart) -> None:
    """Ten stores' weekly sales, validated on 2012: the sales in thousands is flagged;
    store, department (as a number and as text), holiday flag, type and size are not."""
    tr = pd.read_csv(full_walmart / "train.csv.zip", parse_dates=["Date"])
    tr = tr[tr["Store"] <= 10].merge(pd.read_csv(full_walmart / "stores.csv"), on="Store")
    tr["dept_name"] = "dept " + tr["Dept"].astype(str)
    tr["sales_k"] = (tr["Weekly_Sales"] / 1000).round()
    cols = ["Store", "Dept", "dept_name", "IsHoliday", "Type", "Size", "sales_k"]
    leaks = find_leaks(tr, target="Weekly_Sales", task="forecast", columns=cols,
                       validation=(tr["Date"] >= "2012-01-01").to_numpy())
    assert [(x.column, x.kind) for x in leaks] == [("sales_k", "predicts_target")]
    assert leaks[0].value > 0.99


def test_multiclass_on_wine() -> None:
    from sklearn.datasets import load_wine
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    d = load_wine(as_frame=True).frame
    rng = np.random.default_rng(0)
    d["cultivar"] = d["target"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    d["noisy_class"] = d["target"] + rng.normal(0, 0.3, len(d))
    _, val_idx = train_test_split(np.arange(len(d)), test_size=0.3, stratify=d["target"],
                                  random_state=0)
    val = np.isin(np.arange(len(d)), val_idx)
    inputs = [c for c in d.columns if c != "target"]
    leaks = find_leaks(d, target="target", task="classification", columns=inputs,
                       validation=val)
    assert [x.column for x in leaks] == ["cultivar", "noisy_class"]
    assert leaks[0].value == 1.0
    x, y = d[["noisy_class"]].to_numpy(), d["target"].to_numpy()
    n_fit = int((~val).sum())
    tree = DecisionTreeClassifier(max_leaf_nodes=MAX_LEAVES,
                                  min_samples_leaf=min(MIN_LEAF, n_fit // 20),
                                  random_state=0).fit(x[~val], y[~val])
    expected = roc_auc_score(y[val], tree.predict_proba(x[val]), multi_class="ovr",
                             average="macro")
    assert leaks[1].value == pytest.approx(expected, abs=1e-12)


def test_messages_and_dicts() -> None:
    leak = Leak("employed_copy", "predicts_target", "roc_auc", 0.9991, threshold=0.98,
                rows=13_742)
    assert leak.message() == ("column 'employed_copy' alone predicts the target: ROC AUC "
                              "0.999 on validation (> 0.98)")
    near = Leak("x", "predicts_target", "roc_auc", 0.98042, threshold=0.98)
    assert "ROC AUC 0.9804 on validation (> 0.98)" in near.message()
    assert leak.to_dict() == {"column": "employed_copy", "kind": "predicts_target",
                              "metric": "roc_auc", "value": 0.9991, "threshold": 0.98,
                              "rows": 13_742, "together": [], "message": leak.message()}


@pytest.mark.parametrize(("change", "error"), [
    ({"task": "ranking"}, "task == 'ranking', must be one of"),
    ({"columns": ["nope"]}, "column 'nope' is not in the frame"),
    ({"columns": ["y"]}, "columns holds the target 'y'"),
    ({"validation": np.ones(3, dtype=bool)}, "expected a boolean mask of the frame's 200"),
    ({"validation": np.arange(200) % 2}, "validation is int64"),
    ({"validation": np.ones(200, dtype=bool)}, "no fit (validation False) rows"),
    ({"max_auc": 0.3}, "max_auc == 0.3, must be in (0.5, 1]"),
    ({"max_r2": 1.5}, "max_r2 == 1.5, must be in (0, 1]"),
    ({"max_rows": 0}, "max_rows == 0, must be an integer >= 1"),
    ({"task": "regression", "target": "label"}, "target 'label' holds str values"),
])
def test_bad_arguments_are_named(change: dict, error: str) -> None:
    frame = pd.DataFrame({"x": np.arange(200.0), "y": np.arange(200) % 2,
                          "label": ["a", "b"] * 100})
    args = {"target": "y", "task": "classification", "columns": ["x"],
            "validation": np.arange(200) >= 150, **change}
    with pytest.raises(ValueError) as info:
        find_leaks(frame, **args)
    assert error in str(info.value)
