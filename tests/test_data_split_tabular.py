"""cd4ml.data.tabular_split on real rows: ACS employment (skipped when absent) and the
committed bike-sharing days. Roles partition the rows, shares are exact per class (the
per-class counts of scikit-learn's stratified split are the reference), and the roles
depend on the rows and the seed, never on their order."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from cd4ml.config import SplitConfig
from cd4ml.data import group_split
from cd4ml.data.tabular_split import ROLES, assign_roles
from cd4ml.errors import DataError

SHARED = Path(os.environ.get("CD4ML_SHARED_DATA")
              or Path(__file__).resolve().parents[2] / "shared" / "data")
ACS = SHARED / "acs-employment-ma" / "employment.parquet"
BIKE = Path(__file__).parent / "data" / "bike_sharing_daily.csv"
needs_acs = pytest.mark.skipif(not ACS.is_file(), reason=(
    f"ACS employment data not found at {ACS} (set CD4ML_SHARED_DATA to the folder holding "
    f"acs-employment-ma/, or run `cd4ml example-data DIR --dataset employment`)"))
YEARS = dict(train={"year": [2015]}, holdout={"year": [2016]}, exclude={"year": [2017, 2018]})


@pytest.fixture(scope="module")
def acs() -> pd.DataFrame:
    if not ACS.is_file():
        pytest.skip(f"ACS employment data not found at {ACS}")
    return pd.read_parquet(ACS)


@pytest.fixture(scope="module")
def bike() -> pd.DataFrame:
    return pd.read_csv(BIKE, parse_dates=["dteday"])


def split(**kw: Any) -> SplitConfig:
    return SplitConfig(**kw)


def by_id(frame: pd.DataFrame, roles: np.ndarray, key: str = "id") -> pd.Series:
    return pd.Series(roles, index=frame[key].to_numpy()).sort_index()


def shares(y: pd.Series) -> pd.Series:
    return y.value_counts(normalize=True).sort_index()


@needs_acs
def test_year_split_counts_and_stratified_validation(acs: pd.DataFrame) -> None:
    s = assign_roles(acs, split(by="values", **YEARS,
                                validation={"share": 0.2, "stratify": True, "seed": 0}),
                     target="employed", classification=True)
    counts = s.counts()
    assert counts["train"] + counts["validation"] == 68_785
    assert (counts["train"], counts["validation"]) == (55_028, 13_757)  # 80 / 20
    assert counts["holdout"] == 69_126 and counts["excluded"] == 69_635 + 70_131
    year = acs["year"].to_numpy()
    assert set(year[s.mask("train") | s.mask("validation")]) == {2015}
    assert set(year[s.mask("holdout")]) == {2016}
    assert set(year[s.mask("excluded")]) == {2017, 2018}
    y15 = acs.loc[year == 2015, "employed"]
    for role in ("train", "validation"):
        got = shares(acs.loc[s.mask(role), "employed"])
        assert (got - shares(y15)).abs().max() < 0.005, (role, got)
    # the reference: scikit-learn's stratified 80/20 split has the same count per class
    _, ref = train_test_split(y15, test_size=0.2, stratify=y15, random_state=0)
    assert s.classes["validation"] == {str(k): int(v) for k, v in
                                       ref.value_counts().sort_index().items()}
    summary = s.summary()
    assert summary["method"] == "values" and summary["counts"] == counts
    assert summary["rule"] == ("train: year in [2015]; holdout: year in [2016]; "
                               "exclude: year in [2017, 2018]")
    assert summary["validation"] == {"share": 0.2, "seed": 0, "by": "rows",
                                     "stratify": "employed"}


@needs_acs
def test_no_row_in_two_roles_and_train_defaults_to_the_rest(acs: pd.DataFrame) -> None:
    s = assign_roles(acs, split(by="values", **YEARS), target="employed", classification=True)
    assert set(np.unique(s.roles)) == set(ROLES)
    masks = np.vstack([s.mask(r) for r in ROLES])
    assert (masks.sum(axis=0) == 1).all()
    ids = {r: set(acs["id"][s.mask(r)]) for r in ROLES}
    assert all(not ids[a] & ids[b] for a in ROLES for b in ROLES if a < b)
    rest = assign_roles(acs, split(by="values", holdout={"year": [2016]},
                                   exclude={"year": [2017, 2018]}),
                        target="employed", classification=True)
    assert (rest.roles == s.roles).all()  # train: the rows neither held out nor excluded
    only = assign_roles(acs, split(by="values", train={"year": [2015]},
                                   holdout={"year": [2016]}),
                        target="employed", classification=True)
    assert only.counts()["excluded"] == only.summary()["unmatched"] == 139_766


@needs_acs
def test_roles_do_not_depend_on_row_order_but_on_the_seed(acs: pd.DataFrame) -> None:
    shuffled = acs.sample(frac=1.0, random_state=11).reset_index(drop=True)
    configs = [
        split(by="values", **YEARS),
        split(by="random", holdout_share=0.25, seed=3, validation={"share": 0.1, "seed": 5}),
        split(by="group", columns=["SCHL", "MAR"], holdout_share=0.3, seed=1),
        split(by="time", column="year", holdout_from="2016", exclude_from="2017"),
    ]
    for cfg in configs:
        a = assign_roles(acs, cfg, target="employed", classification=True)
        b = assign_roles(shuffled, cfg, target="employed", classification=True)
        assert (by_id(acs, a.roles) == by_id(shuffled, b.roles)).all(), cfg.by
    seeded = split(by="values", **YEARS, validation={"share": 0.2, "seed": 1})
    other = assign_roles(acs, seeded, target="employed", classification=True)
    first = assign_roles(acs, configs[0], target="employed", classification=True)
    assert (other.mask("holdout") == first.mask("holdout")).all()
    moved = (other.mask("validation") != first.mask("validation")).sum()
    assert moved > 10_000  # another seed draws another validation share


@needs_acs
def test_time_on_a_year_column_equals_the_values_split(acs: pd.DataFrame) -> None:
    t = assign_roles(acs, split(by="time", column="year", holdout_from="2016",
                                exclude_from="2017"), target="employed", classification=True)
    v = assign_roles(acs, split(by="values", **YEARS), target="employed", classification=True)
    assert (t.roles == v.roles).all()
    assert t.summary()["rule"] == ("holdout: year >= 2016 and < 2017; "
                                   "excluded: year >= 2017")


@needs_acs
def test_random_holdout_stratified_exactly_like_scikit_learn(acs: pd.DataFrame) -> None:
    y = acs["employed"]
    s = assign_roles(acs, split(by="random", holdout_share=0.2, stratify=True, seed=0),
                     target="employed", classification=True)
    _, ref = train_test_split(y, test_size=0.2, stratify=y, random_state=0)
    assert s.classes["holdout"] == {str(k): int(v) for k, v in
                                    ref.value_counts().sort_index().items()}
    assert (shares(y[s.mask("holdout")]) - shares(y)).abs().max() < 1e-4
    plain = assign_roles(acs, split(by="random", holdout_share=0.2, stratify=False, seed=0),
                         target="employed", classification=True)
    assert plain.counts()["holdout"] == round(0.2 * len(acs))
    assert plain.summary()["rule"] == "holdout: 20% of rows at random"
    regression = assign_roles(acs, split(by="random", holdout_share=0.2, seed=0),
                              target="AGEP", classification=False)
    assert regression.classes == {} and regression.summary()["validation"]["stratify"] is None


@needs_acs
def test_group_split_keeps_groups_whole_in_holdout_and_validation(acs: pd.DataFrame) -> None:
    cols = ["SCHL", "MAR"]
    s = assign_roles(acs, split(by="group", columns=cols, holdout_share=0.3, seed=2,
                                validation={"share": 0.25, "seed": 2}),
                     target="employed", classification=True)
    assert (s.mask("holdout") == group_split(acs[cols], test_fraction=0.3, seed=2)).all()
    per_group = pd.Series(s.roles).groupby([acs[c].to_numpy() for c in cols]).nunique()
    assert (per_group == 1).all()
    assert s.counts()["validation"] > 0 and s.summary()["validation"]["by"] == "groups"


def test_time_split_on_bike_days(bike: pd.DataFrame) -> None:
    s = assign_roles(bike, split(by="time", column="dteday", holdout_from="2012-07-01",
                                 exclude_from="2012-10-01"), target="cnt",
                     classification=False)
    c = s.counts()
    assert (c["holdout"], c["excluded"]) == (92, 92)  # Jul-Sep; Oct-Dec 2012
    assert (c["train"], c["validation"]) == (438, 109)  # 547 days before: 109.4 validate
    days = bike["dteday"]
    assert days[s.mask("holdout")].min() == pd.Timestamp("2012-07-01")
    assert days[s.mask("validation") | s.mask("train")].max() == pd.Timestamp("2012-06-30")
    as_text = assign_roles(bike.assign(dteday=bike["dteday"].dt.strftime("%Y-%m-%d")),
                           split(by="time", column="dteday", holdout_from="2012-07-01",
                                 exclude_from="2012-10-01"), target="cnt",
                           classification=False)
    assert (as_text.mask("holdout") == s.mask("holdout")).all()
    yr = assign_roles(bike, split(by="values", holdout={"yr": [1]}), target="cnt",
                      classification=False)
    assert yr.counts()["holdout"] == 366 and yr.counts()["excluded"] == 0


@pytest.mark.parametrize("kw, message", [
    (dict(holdout={"year": [2016]}, exclude={"year": [2016, 2017]}),
     r"split.holdout.year = 2016 and split.exclude.year = 2016 both select 69,126 rows "
     r"\(e.g. row \d+\); a row can have only one role"),
    (dict(train={"SEX": [1]}, holdout={"year": [2016]}),
     r"split.train.SEX = 1 and split.holdout.year = 2016 both select [\d,]+ rows"),
    (dict(holdout={"yeer": [2016]}),
     r"split.holdout.yeer: 'yeer' is not a column; columns: \['id', 'AGEP'"),
    (dict(holdout={"year": [2016, 2019]}),
     r"split.holdout.year = 2019: no row has this value; year holds \[2015, 2016, 2017, 2018\]"),
    (dict(holdout={"year": ["2016"]}),
     r"split.holdout.year = '2016': year holds numbers; give a number"),
    (dict(holdout={"year": [2015, 2016, 2017, 2018]}),
     r"split: no training rows: every row is held out or excluded"),
    (dict(train={"year": [2015]}, holdout={"year": [2016], "AGEP": [-1.0]}),
     r"split.holdout.AGEP = -1.0: no row has this value"),
])
def test_bad_values_name_key_and_value(acs: pd.DataFrame, kw: dict[str, Any],
                                       message: str) -> None:
    with pytest.raises(DataError, match=message):
        assign_roles(acs, split(by="values", **kw), target="employed", classification=True)


def test_bad_splits_on_bike_days(bike: pd.DataFrame) -> None:
    def roles(**kw: Any) -> None:
        assign_roles(bike, split(**kw), target="cnt", classification=False)

    with pytest.raises(DataError, match=r"split.holdout = \{'yr': \[0\], 'mnth': \[1\], "
                                        r"'season': \[3\]\}: no row matches all of these"):
        roles(by="values", holdout={"yr": [0], "mnth": [1], "season": [3]})
    with pytest.raises(DataError, match=r"split.holdout_from = '2013-01-01': no row is from "
                                        r"then on"):
        roles(by="time", column="dteday", holdout_from="2013-01-01")
    with pytest.raises(DataError, match=r"no row is earlier, so none is left to train"):
        roles(by="time", column="dteday", holdout_from="2010-01-01")
    with pytest.raises(DataError, match=r"split.exclude_from = '2012-01-01': must be later "
                                        r"than split.holdout_from = '2012-06-01'"):
        roles(by="time", column="dteday", holdout_from="2012-06-01", exclude_from="2012-01-01")
    with pytest.raises(DataError, match=r"split.holdout_from = 'June': not a date"):
        roles(by="time", column="dteday", holdout_from="June")
    with pytest.raises(DataError, match=r"split.columns: 'store' is not a column"):
        roles(by="group", columns=["store"], holdout_share=0.2)
    with pytest.raises(DataError, match=r"split.column = 'dteday': 1 value\(s\) are not dates "
                                        r"\(e.g. 'soon'\)"):
        assign_roles(bike.astype({"dteday": "str"}).assign(
            dteday=lambda d: d["dteday"].where(d.index != 5, "soon")),
            split(by="time", column="dteday", holdout_from="2012-07-01"), target="cnt",
            classification=False)
    with pytest.raises(DataError, match=r"target 'count' is not a column"):
        assign_roles(bike, split(by="values", holdout={"yr": [1]}), target="count",
                     classification=False)
    with pytest.raises(DataError, match=r"split.validation.share = 0.1 of 4 training rows "
                                        r"leaves no validation rows"):
        assign_roles(bike.iloc[27:35], split(by="values", holdout={"mnth": [2]},
                                             validation={"share": 0.1}),
                     target="cnt", classification=False)
