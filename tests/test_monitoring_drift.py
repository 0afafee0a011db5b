"""Drift verdicts on real data, and the odd inputs each get a state, never a crash.

ACS employment: 2015 against 2018 is small input shifts (Evidently finds none of the 16
columns drifted), so nothing may drift; the same 2018 with AGEP + 10 years must. Walmart:
the MarkDown columns are all missing before November 2011 and filled after, which the
missing-rate signal must find (the all-missing reference column is a finding, not an
error).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cd4ml.monitoring import (ColumnRule, DriftSettings, Reference, compare, default_method)
from cd4ml.monitoring.summary import ColumnSummary

from acs_data import ACS_INPUTS  # noqa: E402


@pytest.fixture(scope="module")
def acs(acs_years: pd.DataFrame) -> pd.DataFrame:
    return acs_years  # every ACS row, all years (conftest)


@pytest.fixture(scope="module")
def acs_ref(acs) -> Reference:
    return Reference.from_frame(acs.loc[acs.year == 2015, ACS_INPUTS])


def test_acs_2018_small_shifts_are_not_drift(acs, acs_ref) -> None:
    rep = compare(acs_ref, acs.loc[acs.year == 2018, ACS_INPUTS])
    assert rep.drifted_columns == []
    assert rep.share_drifted == 0.0 and not rep.dataset_drifted
    # the defaults are Evidently's for a reference of 68,785 rows
    assert {d.method for d in rep.columns.values()} == {"wasserstein", "jensenshannon"}
    assert rep.columns["AGEP"].method == "wasserstein"
    assert rep.columns["SEX"].method == "jensenshannon"  # numeric, two values: as categories


def test_acs_injected_age_shift_is_drift(acs, acs_ref) -> None:
    cur = acs.loc[acs.year == 2018, ACS_INPUTS].copy()
    cur["AGEP"] += 10
    rep = compare(acs_ref, cur)
    assert rep.drifted_columns == ["AGEP"]
    age = rep.columns["AGEP"]
    assert age.state == "drifted" and age.score > 0.4
    assert age.companion["method"] == "ks" and age.companion["score"] < 1e-12


def test_significance_alone_does_not_make_drift(acs, acs_ref) -> None:
    """KS on 688,000 rows finds a half-year age shift significant; its effect (normed
    Wasserstein 0.02) is negligible, so the verdict is no drift, and says why."""
    cur = pd.concat([acs.loc[acs.year == 2015, ACS_INPUTS]] * 10, ignore_index=True)
    cur["AGEP"] += 0.5
    s = DriftSettings(columns={"AGEP": ColumnRule(method="ks")})
    age = compare(acs_ref, cur, settings=s).columns["AGEP"]
    assert age.method == "ks" and age.score < 1e-6 and age.method_drifted
    assert not age.drifted and age.state == "ok"
    assert age.companion["method"] == "wasserstein" and age.companion["score"] < 0.1
    assert "not large enough" in age.message
    loose = DriftSettings(require_both=False, columns={"AGEP": ColumnRule(method="ks")})
    assert compare(acs_ref, cur, settings=loose).columns["AGEP"].drifted


def test_walmart_markdown_onset_is_found(full_walmart) -> None:
    sales = pd.read_csv(full_walmart / "train.csv.zip", parse_dates=["Date"])
    feats = pd.read_csv(full_walmart / "features.csv", parse_dates=["Date"])
    df = sales.merge(feats.drop(columns="IsHoliday"), on=["Store", "Date"], how="left")
    cut = pd.Timestamp("2011-11-01")
    cols = [c for c in df.columns if c != "Date"]
    ref = Reference.from_frame(df.loc[df.Date < cut, cols])
    rep = compare(ref, df.loc[df.Date >= cut, cols])
    for k in range(1, 6):
        md = rep.columns[f"MarkDown{k}"]
        assert md.state == "not comparable" and md.drifted, md
        assert md.missing["reference"] == 1.0 and md.missing["current"] < 0.3
        assert "all missing in training" in md.message
    # rows from inside the training period: the MarkDowns are as missing as in training
    inside = compare(ref, df.loc[(df.Date >= "2011-06-01") & (df.Date < cut), cols])
    assert not any(inside.columns[f"MarkDown{k}"].drifted for k in range(1, 6))


def test_default_method_follows_evidentlys_rule() -> None:
    num = lambda v: ColumnSummary.of(pd.Series(v, dtype=float), "numeric")  # noqa: E731
    cat = lambda v: ColumnSummary.of(pd.Series(v), "categorical")  # noqa: E731
    rng = np.random.default_rng(0)
    assert default_method(num(rng.normal(size=500)), num(rng.normal(size=50))).name == "ks"
    assert default_method(num(rng.normal(size=5000)), num(rng.normal(size=50))).name == \
        "wasserstein"
    assert default_method(num([1, 2, 3] * 100), num([1, 2])).name == "chisquare"
    assert default_method(num([1, 2] * 100), num([1, 2])).name == "z"
    assert default_method(num([1, 2] * 1000), num([1, 2])).name == "jensenshannon"
    assert default_method(cat(list("abc") * 100), cat(list("ab"))).name == "chisquare"
    assert default_method(cat(list("abc") * 1000), cat(list("ab"))).name == "jensenshannon"


def test_odd_windows_give_states_not_crashes(acs, acs_ref) -> None:
    cur = acs.loc[acs.year == 2018, ACS_INPUTS]
    empty = compare(acs_ref, cur.head(0))
    assert {d.state for d in empty.columns.values()} == {"insufficient"}
    assert empty.share_drifted is None and not empty.dataset_drifted
    one = compare(acs_ref, cur.head(1))
    assert {d.state for d in one.columns.values()} == {"insufficient"}
    assert not one.drifted_columns
    assert "fewer than min_rows (30)" in one.columns["AGEP"].message
    # a column missing from the current data is reported, not skipped
    gone = compare(acs_ref, cur.drop(columns=["MIL"]))
    assert gone.columns["MIL"].state == "missing column" and gone.columns["MIL"].drifted


def test_new_categories_all_null_and_constant_columns() -> None:
    rng = np.random.default_rng(3)
    ref = Reference.from_frame(pd.DataFrame({
        "city": rng.choice(["a", "b", "c"], 3000), "const": 7.0,
        "empty": pd.Series([None] * 3000, dtype=float)}))
    cur = pd.DataFrame({"city": rng.choice(["a", "b", "c", "zz"], 2000, p=[.3, .3, .3, .1]),
                        "const": 7.0, "empty": pd.Series([None] * 2000, dtype=float)})
    rep = compare(ref, cur)
    city = rep.columns["city"]
    assert city.new_categories["values"] == ["zz"] and city.drifted
    assert city.new_categories["rate"] == pytest.approx((cur.city == "zz").mean())
    assert city.state == "ok"  # the known categories keep their shares
    assert rep.columns["const"].state == "ok" and not rep.columns["const"].drifted
    assert rep.columns["empty"].state == "not comparable"
    assert not rep.columns["empty"].drifted  # all missing on both sides: nothing moved


def test_bad_rules_are_refused_naming_the_column(acs_ref) -> None:
    with pytest.raises(ValueError, match="'nope'.*does not hold"):
        compare(acs_ref, pd.DataFrame(), settings=DriftSettings(columns={"nope": ColumnRule()}))
    with pytest.raises(ValueError, match="'magic' .*column 'AGEP'.*not known"):
        compare(acs_ref, pd.DataFrame(),
                settings=DriftSettings(columns={"AGEP": ColumnRule(method="magic")}))
    with pytest.raises(ValueError, match="alpha == 1.5, must be in"):
        DriftSettings(alpha=1.5)


def test_reference_round_trips_through_parquet(acs_ref) -> None:
    back = Reference.from_bytes(acs_ref.to_bytes())
    assert back.kinds == acs_ref.kinds and back.rows == acs_ref.rows
    for c, s in acs_ref.features.items():
        assert back.features[c].to_dict() == s.to_dict()


def test_config_section_maps_to_settings_and_names_every_method() -> None:
    from cd4ml.config import DRIFT_METHODS, DriftConfig, validate_config
    from cd4ml.errors import ConfigError
    from cd4ml.monitoring import METHODS

    assert set(DRIFT_METHODS) == set(METHODS)
    s = DriftSettings.from_config(DriftConfig(alpha=0.01, columns={"AGEP": {"method": "ks"}}))
    assert s.alpha == 0.01 and s.columns["AGEP"] == ColumnRule(method="ks")
    raw = {"project": "p", "task": "classification",
           "data": {"sources": {"s": {"path": "s.csv"}}, "main": "s", "target": "y"},
           "monitoring": {"drift": {"columns": {"AGEP": {"method": "magic"}}}}}
    with pytest.raises(ConfigError, match=r"monitoring\.drift\.columns\.AGEP\.method.*'magic'"):
        validate_config(raw)
    raw["monitoring"] = {"drift": {"alpha": 2}}
    with pytest.raises(ConfigError, match=r"monitoring\.drift\.alpha = 2"):
        validate_config(raw)
